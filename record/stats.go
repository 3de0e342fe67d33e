package record

import (
	"fmt"
	"math"
	"sort"
)

// Z95 is the normal quantile for a two-sided 95% interval.
const Z95 = 1.96

// TitleCount is one distinct finding title and the number of runs it was
// seen in (a title printed twice in one run counts once).
type TitleCount struct {
	Title string `json:"title"`
	Runs  int    `json:"runs"`
}

// VariantStats is a variant's verdict over its runs: what DESIGN.md calls
// "counts per outcome, the rate with a 95% interval, the distinct titles".
type VariantStats struct {
	Name     string          `json:"name"`
	Baseline bool            `json:"baseline"`
	Runs     int             `json:"runs"`
	Counts   map[Outcome]int `json:"counts"`
	// Judged excludes infra-error and interrupted runs: they say nothing
	// about the kernel, so they are left out of the rate.
	Judged int `json:"judged"`
	// Failures are fail, crash, hang and boot-error runs.
	Failures    int     `json:"failures"`
	FailureRate float64 `json:"failure_rate"` // Failures/Judged; 0 when nothing was judged
	Lo          float64 `json:"lo"`           // Wilson 95% interval of FailureRate
	Hi          float64 `json:"hi"`
	// PValueVsBaseline is Fisher's exact two-sided p for this variant's
	// failures/passes against the baseline's; 1 for the baseline itself and
	// whenever there is nothing to compare.
	PValueVsBaseline float64 `json:"p_value_vs_baseline"`
	// Compared is false when there was nothing to compare with: this is
	// the baseline, or the baseline has no judged runs in these results.
	Compared bool         `json:"compared_with_baseline"`
	Titles   []TitleCount `json:"titles"`
	// NewVsBaseline are the titles the baseline never showed; empty for the
	// baseline, and when the baseline is not in the summary.
	NewVsBaseline []string `json:"new_vs_baseline"`
	// NewEveryRun says, for each title new against the baseline that this
	// variant showed in every one of its runs, what it is: "new: TITLE in
	// 2 of 2 runs, never in 2 baseline runs". At a few runs that is
	// plainer evidence than a p-value.
	NewEveryRun []string `json:"new_every_run"`
	// Detection: the fraction of judged runs that failed (per run) and
	// failures per minute of run time (boot to teardown).
	RunMinutes        float64 `json:"run_minutes"`
	FailuresPerMinute float64 `json:"failures_per_minute"`
}

// IsFailure reports whether an outcome counts against the kernel.
func IsFailure(o Outcome) bool {
	switch o {
	case Fail, Crash, Hang, BootError:
		return true
	}
	return false
}

// IsJudged reports whether a run of this outcome says anything about the
// kernel: infrastructure errors and interruptions do not.
func IsJudged(o Outcome) bool { return o != InfraError && o != Interrupted }

// Stats computes per-variant statistics in the order of s.Variants.
func (s *Summary) Stats() []VariantStats {
	out := make([]VariantStats, len(s.Variants))
	base := -1
	for i := range s.Variants {
		out[i] = variantStats(&s.Variants[i])
		if s.Baseline != "" && s.Variants[i].Name == s.Baseline {
			out[i].Baseline = true
			base = i
		}
	}
	for i := range out {
		out[i].PValueVsBaseline = 1
		out[i].NewVsBaseline = []string{}
		out[i].NewEveryRun = []string{}
		if base < 0 || i == base {
			continue
		}
		b := out[base]
		out[i].Compared = b.Judged > 0 && out[i].Judged > 0
		out[i].PValueVsBaseline = FisherExact(out[i].Failures, out[i].Judged-out[i].Failures, b.Failures, b.Judged-b.Failures)
		seen := map[string]bool{}
		for _, t := range b.Titles {
			seen[t.Title] = true
		}
		for _, t := range out[i].Titles {
			if !seen[t.Title] {
				out[i].NewVsBaseline = append(out[i].NewVsBaseline, t.Title)
				// Every judged run: an infra-error run saw nothing either way.
				if j := out[i].Judged; j > 0 && t.Runs >= j && b.Judged > 0 {
					out[i].NewEveryRun = append(out[i].NewEveryRun, fmt.Sprintf("new: %s in %d of %d runs, never in %d baseline runs", t.Title, t.Runs, j, b.Judged))
				}
			}
		}
	}
	return out
}

func variantStats(v *VariantSummary) VariantStats {
	st := VariantStats{Name: v.Name, Runs: len(v.Runs), Counts: map[Outcome]int{}, Titles: []TitleCount{}}
	runs := map[string]int{}
	for _, r := range v.Runs {
		st.RunMinutes += r.Seconds / 60
		st.Counts[r.Outcome]++
		if IsJudged(r.Outcome) {
			st.Judged++
			if IsFailure(r.Outcome) {
				st.Failures++
			}
		}
		seen := map[string]bool{}
		for _, f := range r.Findings {
			if !seen[f.Title] {
				seen[f.Title] = true
				runs[f.Title]++
			}
		}
	}
	if st.Judged > 0 {
		st.FailureRate = float64(st.Failures) / float64(st.Judged)
	}
	if st.RunMinutes > 0 {
		st.FailuresPerMinute = float64(st.Failures) / st.RunMinutes
	}
	st.Lo, st.Hi = Wilson(st.Failures, st.Judged, Z95)
	for t, n := range runs {
		st.Titles = append(st.Titles, TitleCount{Title: t, Runs: n})
	}
	sort.Slice(st.Titles, func(i, j int) bool {
		if st.Titles[i].Runs != st.Titles[j].Runs {
			return st.Titles[i].Runs > st.Titles[j].Runs
		}
		return st.Titles[i].Title < st.Titles[j].Title
	})
	return st
}

// Wilson is the Wilson score interval for k successes in n trials. Unlike
// the normal approximation it stays inside [0,1] and is useful for the
// small n and k = 0 that kernel runs give. n = 0 gives the whole [0,1].
func Wilson(k, n int, z float64) (lo, hi float64) {
	if n <= 0 {
		return 0, 1
	}
	nf := float64(n)
	p := float64(k) / nf
	z2 := z * z
	den := 1 + z2/nf
	center := (p + z2/(2*nf)) / den
	half := z * math.Sqrt(p*(1-p)/nf+z2/(4*nf*nf)) / den
	return math.Max(0, center-half), math.Min(1, center+half)
}

// FisherExact is the two-sided p-value of Fisher's exact test for the 2x2
// table [[a b] [c d]] (here: variant failures/passes, baseline
// failures/passes): the probability, with the margins fixed, of every table
// at most as likely as the observed one. Empty tables give 1.
func FisherExact(a, b, c, d int) float64 {
	if a < 0 || b < 0 || c < 0 || d < 0 {
		return 1
	}
	row1, col1, n := a+b, a+c, a+b+c+d
	if n == 0 {
		return 1
	}
	// Hypergeometric probability of the table with x in the top-left cell.
	lchoose := func(n, k int) float64 {
		l1, _ := math.Lgamma(float64(n + 1))
		l2, _ := math.Lgamma(float64(k + 1))
		l3, _ := math.Lgamma(float64(n - k + 1))
		return l1 - l2 - l3
	}
	lnorm := lchoose(n, col1)
	prob := func(x int) float64 {
		return math.Exp(lchoose(row1, x) + lchoose(n-row1, col1-x) - lnorm)
	}
	observed := prob(a)
	lo, hi := max(0, col1-(n-row1)), min(row1, col1)
	p := 0.0
	for x := lo; x <= hi; x++ {
		// The relative slack keeps tables that tie with the observed one
		// despite rounding in the log-gamma sums.
		if q := prob(x); q <= observed*(1+1e-7) {
			p += q
		}
	}
	return math.Min(1, p)
}
