// Package seqtest is the stopping rule of a decide session: a group-
// sequential exact test of "a variant's failure rate differs from the
// baseline's" that keeps its error rates however often it looks.
//
// Runs come in rounds: round k runs every variant once with the same seed.
// For one variant against the baseline a round is a pair of outcomes. A
// discordant pair (exactly one of the two failed) says which side fails
// more; under the null hypothesis (both kernels fail with the same
// probability for a given seed, runs independent) each discordant pair
// points at the variant with probability exactly 1/2, whatever that
// probability is and however it varies between seeds. So the count of
// variant-only failures among d discordant pairs is Binomial(d, 1/2) under
// the null: a sign test (McNemar's exact test) with no nuisance parameter.
// The sequential version looks after every discordant pair (each round adds
// at most one) and spends alpha along the information d/D with the
// Kim-DeMets power family alpha*t^rho. Boundaries are computed exactly by
// dynamic programming over the binomial walk, so the probability of ever
// rejecting a true null is at most alpha, not approximately.
//
// Equivalence ("the difference is within Margin") is decided once, at the
// final look (the budget or D discordant pairs reached): the two one-sided
// Newcombe hybrid score bounds of the rate difference, each at EquivAlpha,
// both inside the margin. One look, so no spending is needed.
package seqtest

import (
	"errors"
	"fmt"
	"math"
)

// Design is a stopping rule's parameters.
type Design struct {
	// AlphaWorse is the type I error spent on "the variant fails more",
	// AlphaBetter on "the variant fails less"; their sum is the rule's
	// two-sided alpha.
	AlphaWorse  float64 `json:"alpha_worse"`
	AlphaBetter float64 `json:"alpha_better"`
	// MaxDiscordant (D) is the information at which the rule ends: after D
	// discordant pairs without crossing a boundary it stops.
	MaxDiscordant int `json:"max_discordant"`
	// Rho is the spending shape: alpha spent by information t is
	// alpha*t^Rho (1 spends evenly, like Pocock; 3 saves it for the end,
	// like O'Brien-Fleming).
	Rho float64 `json:"rho"`
	// Margin is the equivalence margin on |variant rate - baseline rate|;
	// EquivAlpha the error of declaring equivalence when the true
	// difference is at the margin.
	Margin     float64 `json:"margin"`
	EquivAlpha float64 `json:"equiv_alpha"`
}

// Default is the rule patchbay uses (see README "Deciding"): alpha 0.05
// two-sided, 0.04 of it on "worse" (the question asked), D = 8, rho = 0.5,
// equivalence within 0.1 at 0.05 (two never-failing kernels reach it
// after 29 rounds: the exact upper bound of 0 in 29 is 0.098). A wider
// margin called a fallback that lost data in 1 of 18 runs "equivalent"
// to a baseline that never did: for data loss that is the wrong word. With these, 5 of 5 discordant rounds
// against the variant is the earliest "worse" (exact null probability
// 1/32 <= 0.04*sqrt(5/8)).
func Default() Design {
	return Design{AlphaWorse: 0.04, AlphaBetter: 0.01, MaxDiscordant: 8, Rho: 0.5, Margin: 0.1, EquivAlpha: 0.05}
}

// Check reports a parameter out of range.
func (d Design) Check() error {
	switch {
	case d.AlphaWorse < 0 || d.AlphaBetter < 0 || d.AlphaWorse+d.AlphaBetter <= 0 || d.AlphaWorse+d.AlphaBetter >= 1:
		return fmt.Errorf("alpha_worse %g + alpha_better %g: want each >= 0 and a sum in (0,1)", d.AlphaWorse, d.AlphaBetter)
	case d.MaxDiscordant < 1 || d.MaxDiscordant > 1000:
		return fmt.Errorf("max_discordant %d: want 1..1000", d.MaxDiscordant)
	case !(d.Rho > 0) || d.Rho > 20:
		return fmt.Errorf("rho %g: want (0,20]", d.Rho)
	case !(d.Margin > 0) || d.Margin >= 1:
		return fmt.Errorf("margin %g: want (0,1)", d.Margin)
	case !(d.EquivAlpha > 0) || d.EquivAlpha >= 0.5:
		return fmt.Errorf("equiv_alpha %g: want (0,0.5)", d.EquivAlpha)
	}
	return nil
}

// Bounds are the exact boundaries of a design, indexed by d = 1..D (index
// 0 unused): after d discordant pairs of which v are variant-only failures,
// v >= Upper[d] decides "worse" and v <= Lower[d] decides "better". Upper
// is d+1 and Lower -1 where no outcome crosses.
type Bounds struct {
	Upper []int `json:"upper"`
	Lower []int `json:"lower"`
	// SpentWorse/SpentBetter[d] are the exact null probabilities of having
	// crossed by d; the last entries are the rule's real type I errors.
	SpentWorse  []float64 `json:"spent_worse"`
	SpentBetter []float64 `json:"spent_better"`
}

// Bounds computes the boundaries: at each d the most extreme boundary whose
// cumulative crossing probability under the null stays within the alpha
// spent by t = d/D.
func (d Design) Bounds() (Bounds, error) {
	if err := d.Check(); err != nil {
		return Bounds{}, err
	}
	D := d.MaxDiscordant
	b := Bounds{Upper: make([]int, D+1), Lower: make([]int, D+1), SpentWorse: make([]float64, D+1), SpentBetter: make([]float64, D+1)}
	b.Upper[0], b.Lower[0] = 1, -1
	// dist[v]: null probability of v variant-only failures among the
	// discordant pairs so far without having crossed a boundary.
	dist := []float64{1}
	var spentW, spentB float64
	for n := 1; n <= D; n++ {
		next := make([]float64, n+1)
		for v, p := range dist {
			next[v] += p / 2
			next[v+1] += p / 2
		}
		dist = next
		t := float64(n) / float64(D)
		capW := d.AlphaWorse * math.Pow(t, d.Rho)
		capB := d.AlphaBetter * math.Pow(t, d.Rho)
		// Small slack: sums of powers of 1/2 land exactly on some caps.
		const eps = 1e-12
		u, tail := n+1, 0.0
		for v := n; v >= 0; v-- {
			if spentW+tail+dist[v] > capW+eps {
				break
			}
			tail += dist[v]
			u = v
		}
		l, head := -1, 0.0
		for v := 0; v < u; v++ {
			if spentB+head+dist[v] > capB+eps {
				break
			}
			head += dist[v]
			l = v
		}
		for v := u; v <= n; v++ {
			dist[v] = 0
		}
		for v := 0; v <= l; v++ {
			dist[v] = 0
		}
		spentW += tail
		spentB += head
		b.Upper[n], b.Lower[n] = u, l
		b.SpentWorse[n], b.SpentBetter[n] = spentW, spentB
	}
	return b, nil
}

// Pair is one round's outcome for a variant and the baseline.
type Pair struct {
	Variant, Baseline bool // failed
}

// Decision is what the rule says about one variant.
type Decision string

// Decisions.
const (
	Worse      Decision = "differs-worse"  // fails more than the baseline
	Better     Decision = "differs-better" // fails less than the baseline
	Equivalent Decision = "equivalent"     // rate difference within the margin
	NoDiff     Decision = "no-difference"  // D discordant pairs, no boundary crossed, not shown equivalent
	Undecided  Decision = "undecided"      // still looking (or the budget ended first)
)

// Decided reports whether the rule stops for this variant.
func (x Decision) Decided() bool { return x != Undecided }

// Look is the state after one round: the counts and the boundary in force.
type Look struct {
	Round        int `json:"round"`         // 1-based
	Discordant   int `json:"discordant"`    // d
	VariantOnly  int `json:"variant_only"`  // v: variant failed, baseline passed
	BaselineOnly int `json:"baseline_only"` // d - v
	Upper        int `json:"upper"`         // boundary at d (d+1: none)
	Lower        int `json:"lower"`         // (-1: none)
}

// Result is the rule applied to a sequence of rounds.
type Result struct {
	Decision Decision `json:"decision"`
	// DecidedAt is the round (1-based) the decision was made; 0 when
	// undecided.
	DecidedAt int    `json:"decided_at"`
	Looks     []Look `json:"looks"`
	// Counts over every pair used (not only the discordant ones).
	Rounds           int `json:"rounds"`
	VariantFailures  int `json:"variant_failures"`
	BaselineFailures int `json:"baseline_failures"`
	// The Newcombe bounds of variant - baseline failure rate at the final
	// look (set when final was asked for).
	DiffLo float64 `json:"diff_lo,omitempty"`
	DiffHi float64 `json:"diff_hi,omitempty"`
	Reason string  `json:"reason"`
}

// Decide applies the rule to the rounds in order, stopping at the first
// boundary crossed. final says the budget ends after these rounds: when no
// boundary was crossed the equivalence test gets its one look.
func (d Design) Decide(b Bounds, pairs []Pair, final bool) Result {
	r := Result{Decision: Undecided}
	D := d.MaxDiscordant
	disc, v := 0, 0
	for i, p := range pairs {
		r.Rounds++
		if p.Variant {
			r.VariantFailures++
		}
		if p.Baseline {
			r.BaselineFailures++
		}
		if p.Variant != p.Baseline {
			disc++
			if p.Variant {
				v++
			}
		}
		lk := Look{Round: i + 1, Discordant: disc, VariantOnly: v, BaselineOnly: disc - v, Upper: 1, Lower: -1}
		if disc > 0 {
			lk.Upper, lk.Lower = b.Upper[disc], b.Lower[disc]
		}
		r.Looks = append(r.Looks, lk)
		switch {
		case disc > 0 && v >= b.Upper[disc]:
			r.Decision, r.DecidedAt = Worse, i+1
			r.Reason = fmt.Sprintf("%d of %d discordant rounds failed only in the variant >= boundary %d (exact null probability of crossing by then %.3g)", v, disc, b.Upper[disc], b.SpentWorse[disc])
			return r
		case disc > 0 && v <= b.Lower[disc]:
			r.Decision, r.DecidedAt = Better, i+1
			r.Reason = fmt.Sprintf("%d of %d discordant rounds failed only in the baseline (variant-only %d <= boundary %d)", disc-v, disc, v, b.Lower[disc])
			return r
		}
		if disc >= D {
			final = true // the rule ends here: the rounds after D are not used
			break
		}
	}
	if !final {
		r.Reason = fmt.Sprintf("%d discordant of %d rounds: no boundary crossed yet", disc, r.Rounds)
		return r
	}
	n := r.Rounds
	r.DiffLo, r.DiffHi = NewcombeDiff(r.VariantFailures, n, r.BaselineFailures, n, d.EquivAlpha)
	if n > 0 && r.DiffLo > -d.Margin && r.DiffHi < d.Margin {
		r.Decision, r.DecidedAt = Equivalent, n
		r.Reason = fmt.Sprintf("failure rates %d/%d vs %d/%d: difference in [%.2f, %.2f], inside +-%.2f", r.VariantFailures, n, r.BaselineFailures, n, r.DiffLo, r.DiffHi, d.Margin)
		return r
	}
	if disc >= D {
		r.Decision, r.DecidedAt = NoDiff, n
		r.Reason = fmt.Sprintf("%d discordant rounds without crossing a boundary; difference in [%.2f, %.2f], not inside +-%.2f", disc, r.DiffLo, r.DiffHi, d.Margin)
		return r
	}
	r.Reason = fmt.Sprintf("budget ended after %d rounds (%d discordant): no boundary crossed; difference in [%.2f, %.2f], not inside +-%.2f", n, disc, r.DiffLo, r.DiffHi, d.Margin)
	return r
}

// Wilson is the Wilson score interval of k in n at normal quantile z; n = 0
// gives [0,1].
func Wilson(k, n int, z float64) (lo, hi float64) {
	if n <= 0 {
		return 0, 1
	}
	nf, p, z2 := float64(n), float64(k)/float64(n), z*z
	den := 1 + z2/nf
	c := (p + z2/(2*nf)) / den
	h := z * math.Sqrt(p*(1-p)/nf+z2/(4*nf*nf)) / den
	return math.Max(0, c-h), math.Min(1, c+h)
}

// ClopperPearson is the exact interval of k in n, each side at level a
// (the p where the binomial tail reaches a), by bisection.
func ClopperPearson(k, n int, a float64) (lo, hi float64) {
	if n <= 0 {
		return 0, 1
	}
	// cdf is P(X <= k) for X ~ Binomial(n, p), by the pmf's recurrence.
	cdf := func(k int, p float64) float64 {
		term := math.Pow(1-p, float64(n)) // P(X = 0)
		s := term
		for i := 1; i <= k; i++ {
			term *= float64(n-i+1) / float64(i) * p / (1 - p)
			s += term
		}
		return s
	}
	solve := func(f func(p float64) bool) float64 { // f true below the root
		l, h := 0.0, 1.0
		for range 50 { // 1e-15
			m := (l + h) / 2
			if f(m) {
				l = m
			} else {
				h = m
			}
		}
		return (l + h) / 2
	}
	lo, hi = 0, 1
	if k > 0 {
		lo = solve(func(p float64) bool { return 1-cdf(k-1, p) < a })
	}
	if k < n {
		hi = solve(func(p float64) bool { return cdf(k, p) > a })
	}
	return lo, hi
}

// NewcombeDiff is Newcombe's hybrid interval (his method 10) for k1/n1 -
// k2/n2, built here from the two exact Clopper-Pearson intervals at one-
// sided level a instead of Wilson's: with Wilson's it called a difference
// of 0.2 from a never-failing baseline "within 0.2" in 7% of simulated
// sessions at a = 0.05 (TestEquivalenceError).
func NewcombeDiff(k1, n1, k2, n2 int, a float64) (lo, hi float64) {
	if n1 <= 0 || n2 <= 0 {
		return -1, 1
	}
	p1, p2 := float64(k1)/float64(n1), float64(k2)/float64(n2)
	l1, u1 := ClopperPearson(k1, n1, a)
	l2, u2 := ClopperPearson(k2, n2, a)
	d := p1 - p2
	lo = d - math.Sqrt((p1-l1)*(p1-l1)+(u2-p2)*(u2-p2))
	hi = d + math.Sqrt((u1-p1)*(u1-p1)+(p2-l2)*(p2-l2))
	return lo, hi
}

// Power is the exact probability that the rule decides "worse" within
// rounds rounds when the variant fails with probability pv and the baseline
// with pb, independently (by dynamic programming over the rounds).
func (d Design) Power(b Bounds, pv, pb float64, rounds int) (float64, error) {
	if pv < 0 || pv > 1 || pb < 0 || pb > 1 {
		return 0, errors.New("rates must be in [0,1]")
	}
	D := d.MaxDiscordant
	qw, qb := pv*(1-pb), pb*(1-pv)
	qs := 1 - qw - qb
	// state[disc][v], not yet stopped.
	state := make([][]float64, D+1)
	for i := range state {
		state[i] = make([]float64, i+1)
	}
	state[0][0] = 1
	worse := 0.0
	for range rounds {
		next := make([][]float64, D+1)
		for i := range next {
			next[i] = make([]float64, i+1)
		}
		for n := 0; n <= D; n++ {
			for v, p := range state[n] {
				if p == 0 {
					continue
				}
				next[n][v] += p * qs
				if n == D {
					continue // stopped at D: kept only so mass is not lost
				}
				for _, step := range [2]struct {
					q  float64
					dv int
				}{{qw, 1}, {qb, 0}} {
					m, nv := n+1, v+step.dv
					switch {
					case nv >= b.Upper[m]:
						worse += p * step.q
					case nv <= b.Lower[m]:
					case m == D:
					default:
						next[m][nv] += p * step.q
					}
				}
			}
		}
		state = next
	}
	return worse, nil
}
