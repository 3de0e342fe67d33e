package seqtest

import (
	"math"
	"math/rand/v2"
	"testing"
)

// simulate runs sessions of up to rounds rounds with independent failures
// (variant pv, baseline pb) and returns the fraction ending in each
// decision. Decide walks the rounds in order and stops at the first
// boundary crossed, so one call on all rounds is the session that looked
// after every round.
func simulate(t *testing.T, d Design, pv, pb float64, rounds, sessions int, seed uint64) map[Decision]float64 {
	t.Helper()
	b, err := d.Bounds()
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(seed, 1))
	count := map[Decision]int{}
	pairs := make([]Pair, 0, rounds)
	for range sessions {
		pairs = pairs[:0]
		for range rounds {
			pairs = append(pairs, Pair{Variant: rng.Float64() < pv, Baseline: rng.Float64() < pb})
		}
		count[d.Decide(b, pairs, true).Decision]++
	}
	out := map[Decision]float64{}
	for k, n := range count {
		out[k] = float64(n) / float64(sessions)
	}
	return out
}

// slack is three Monte Carlo standard errors of a rate p over n sessions.
func slack(p float64, n int) float64 { return 3 * math.Sqrt(p*(1-p)/float64(n)) }

// TestFalsePositiveRate: equal failure rates, looking after every round up
// to 30 rounds: "differs" (either way) in at most alpha of sessions.
func TestFalsePositiveRate(t *testing.T) {
	d := Default()
	b, _ := d.Bounds()
	alpha := d.AlphaWorse + d.AlphaBetter
	exact := b.SpentWorse[d.MaxDiscordant] + b.SpentBetter[d.MaxDiscordant]
	if exact > alpha {
		t.Fatalf("exact type I error %.4f > alpha %.2f", exact, alpha)
	}
	const n = 20000
	for i, p := range []float64{0.02, 0.1, 0.4, 0.7} {
		got := simulate(t, d, p, p, 30, n, uint64(100+i))
		fp := got[Worse] + got[Better]
		t.Logf("p=%.2f both: differs in %.4f of %d sessions (alpha %.2f, exact bound %.4f), equivalent %.3f", p, fp, n, alpha, exact, got[Equivalent])
		if fp > alpha+slack(alpha, n) {
			t.Errorf("p=%.2f: false-positive rate %.4f > alpha %.2f + slack", p, fp, alpha)
		}
	}
}

// TestPower: the exact power (dynamic programming) and the simulated one
// agree, and match what README claims: at baseline 0.02, variant 0.40,
// about 0.49 within 12 rounds and 0.82 within 20; variant 0.60: 0.88 in 12.
func TestPower(t *testing.T) {
	d := Default()
	b, _ := d.Bounds()
	const n = 20000
	for i, c := range []struct {
		pv, pb float64
		rounds int
		claim  float64
	}{
		{0.40, 0.02, 12, 0.49},
		{0.40, 0.02, 20, 0.82},
		{0.60, 0.02, 12, 0.88},
		{0.80, 0.00, 8, 0.94},
	} {
		exact, err := d.Power(b, c.pv, c.pb, c.rounds)
		if err != nil {
			t.Fatal(err)
		}
		got := simulate(t, d, c.pv, c.pb, c.rounds, n, uint64(200+i))
		t.Logf("variant %.2f baseline %.2f, %d rounds: power exact %.3f simulated %.3f (claim %.2f)", c.pv, c.pb, c.rounds, exact, got[Worse], c.claim)
		if math.Abs(exact-got[Worse]) > slack(exact, n) {
			t.Errorf("simulated power %.3f differs from exact %.3f", got[Worse], exact)
		}
		if math.Abs(exact-c.claim) > 0.01 {
			t.Errorf("exact power %.3f, README claims %.2f", exact, c.claim)
		}
	}
}

// TestEquivalenceError: when the true difference is at the margin, the
// rule calls the variant equivalent in at most EquivAlpha of sessions, for
// any budget; and two kernels that never fail are called equivalent once
// the budget allows it.
func TestEquivalenceError(t *testing.T) {
	d := Default()
	const n = 20000
	worst := 0.0
	for i, pb := range []float64{0, 0.02, 0.1, 0.3} {
		for j, rounds := range []int{12, 30, 60} {
			for k, pv := range []float64{pb + d.Margin, pb - d.Margin} {
				if pv < 0 {
					continue
				}
				got := simulate(t, d, pv, pb, rounds, n, uint64(300+100*i+10*j+k))
				worst = max(worst, got[Equivalent])
				if got[Equivalent] > d.EquivAlpha+slack(d.EquivAlpha, n) {
					t.Errorf("baseline %.2f variant %.2f, %d rounds: equivalent in %.4f > %.2f", pb, pv, rounds, got[Equivalent], d.EquivAlpha)
				}
			}
		}
	}
	t.Logf("worst rate of calling a difference at the margin equivalent: %.4f (equiv alpha %.2f)", worst, d.EquivAlpha)
	got := simulate(t, d, 0, 0, 29, 1000, 9)
	if got[Equivalent] != 1 {
		t.Errorf("never-failing kernels over 29 rounds: equivalent in %.3f of sessions, want all", got[Equivalent])
	}
	if got := simulate(t, d, 0, 0, 28, 1000, 9); got[Equivalent] != 0 {
		t.Errorf("never-failing kernels over 28 rounds: equivalent in %.3f of sessions, want none (0 of 28 bounds at 0.101)", got[Equivalent])
	}
	got = simulate(t, d, 0.02, 0.02, 60, n, 10)
	if got[Equivalent] < 0.3 {
		t.Errorf("both 0.02, 60 rounds: equivalent in only %.3f of sessions", got[Equivalent])
	}
	t.Logf("both 0.02, 60 rounds: equivalent %.3f, undecided %.3f", got[Equivalent], got[Undecided])
}

// TestBounds pins the default boundaries (README shows them) and checks
// each is the most extreme within the spending.
func TestBounds(t *testing.T) {
	d := Default()
	b, err := d.Bounds()
	if err != nil {
		t.Fatal(err)
	}
	wantU := []int{2, 3, 4, 5, 5, 6, 7, 8}
	wantL := []int{-1, -1, -1, -1, -1, -1, 0, 0}
	for i := 1; i <= d.MaxDiscordant; i++ {
		if b.Upper[i] != wantU[i-1] || b.Lower[i] != wantL[i-1] {
			t.Errorf("d=%d: bounds %d/%d, want %d/%d", i, b.Lower[i], b.Upper[i], wantL[i-1], wantU[i-1])
		}
		if b.SpentWorse[i] > d.AlphaWorse*math.Pow(float64(i)/8, d.Rho)+1e-12 {
			t.Errorf("d=%d: spent %.4f beyond the spending function", i, b.SpentWorse[i])
		}
	}
	if err := (Design{AlphaWorse: 0.04, MaxDiscordant: 0, Rho: 1, Margin: 0.2, EquivAlpha: 0.05}).Check(); err == nil {
		t.Error("max_discordant 0 accepted")
	}
}

// TestDecideEvidence: a plain case and its recorded evidence.
func TestDecideEvidence(t *testing.T) {
	d := Default()
	b, _ := d.Bounds()
	var pairs []Pair
	for _, v := range []bool{true, false, true, true, false, true, true} {
		pairs = append(pairs, Pair{Variant: v})
	}
	r := d.Decide(b, pairs, false)
	if r.Decision != Worse || r.DecidedAt != 7 || r.VariantFailures != 5 || len(r.Looks) != 7 {
		t.Fatalf("got %+v", r)
	}
	if lk := r.Looks[6]; lk.Discordant != 5 || lk.VariantOnly != 5 || lk.Upper != 5 {
		t.Errorf("last look %+v", lk)
	}
	r = d.Decide(b, pairs[:6], false)
	if r.Decision != Undecided {
		t.Errorf("4 of 4 discordant decided %s", r.Decision)
	}
}

// TestDecideIsSequential: deciding on all rounds at once gives what
// looking after each round gives (simulate relies on it).
func TestDecideIsSequential(t *testing.T) {
	d := Default()
	b, _ := d.Bounds()
	rng := rand.New(rand.NewPCG(5, 5))
	for range 2000 {
		var pairs []Pair
		var step Result
		for k := 1; k <= 16; k++ {
			pairs = append(pairs, Pair{Variant: rng.Float64() < 0.5, Baseline: rng.Float64() < 0.2})
			step = d.Decide(b, pairs, k == 16)
			if step.Decision.Decided() {
				break
			}
		}
		for len(pairs) < 16 {
			pairs = append(pairs, Pair{Variant: rng.Float64() < 0.5})
		}
		all := d.Decide(b, pairs, true)
		if all.Decision != step.Decision || all.DecidedAt != step.DecidedAt {
			t.Fatalf("one call: %s at %d; round by round: %s at %d", all.Decision, all.DecidedAt, step.Decision, step.DecidedAt)
		}
	}
}
