package bisect

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// fakeOracle fails a run of prefix n with probability pBad when n >= culprit
// and pGood otherwise; errEvery > 0 makes every errEvery-th call fail to
// measure.
type fakeOracle struct {
	culprit     int
	pGood, pBad float64
	rng         *rand.Rand
	calls       int
	errEvery    int
	perPrefix   map[int]int
}

func (f *fakeOracle) Run(ctx context.Context, prefix, attempt int) (bool, error) {
	f.calls++
	if f.perPrefix != nil {
		f.perPrefix[prefix]++
	}
	if f.errEvery > 0 && f.calls%f.errEvery == 0 {
		return false, errors.New("infra")
	}
	p := f.pGood
	if prefix >= f.culprit {
		p = f.pBad
	}
	return f.rng.Float64() < p, nil
}

// slack is three Monte Carlo standard errors of a rate p over n trials.
func slack(p float64, n int) float64 { return 3 * math.Sqrt(p*(1-p)/float64(n)) }

// TestSPRTErrorRates: simulated at the design's own rates, with the
// truncation at MaxRuns, the rule says "bad" for a good prefix and "good"
// for a bad one no more often than its stated bounds.
func TestSPRTErrorRates(t *testing.T) {
	s := DefaultSPRT()
	falseBad, falseGood := s.Errors()
	const n = 50000
	rng := rand.New(rand.NewPCG(1, 2))
	rate := func(p float64, want Decision) (wrong float64, meanRuns float64) {
		var bad, runs int
		for range n {
			fails, k := 0, 0
			for d := Undecided; d == Undecided; {
				k++
				if rng.Float64() < p {
					fails++
				}
				d = s.Decide(k, fails, false)
				if d != Undecided && d != want {
					bad++
				}
			}
			runs += k
		}
		return float64(bad) / n, float64(runs) / n
	}
	fb, runsGood := rate(s.PGood, Good)
	fg, runsBad := rate(s.PBad, Bad)
	t.Logf("good prefix (p=%.2f): said bad %.4f (bound %.4f), %.1f runs; bad prefix (p=%.2f): said good %.4f (bound %.4f), %.1f runs",
		s.PGood, fb, falseBad, runsGood, s.PBad, fg, falseGood, runsBad)
	if fb > falseBad+slack(falseBad, n) || fg > falseGood+slack(falseGood, n) {
		t.Errorf("error rates %.4f / %.4f above the bounds %.4f / %.4f", fb, fg, falseBad, falseGood)
	}
	// A failure rate above the bad rate is found faster and more surely.
	if fg2, _ := rate(0.8, Bad); fg2 > fg {
		t.Errorf("p=0.8: said good %.4f, more often than at p=%.2f (%.4f)", fg2, s.PBad, fg)
	}
}

func TestSPRTDecides(t *testing.T) {
	s := DefaultSPRT()
	if d := s.Decide(1, 1, false); d != Bad {
		t.Errorf("one failure in one run: %q, want bad (a good prefix fails 1%% of the time)", d)
	}
	if d := s.Decide(5, 0, false); d != Undecided {
		t.Errorf("5 clean runs: %q, want undecided", d)
	}
	if d := s.Decide(6, 0, false); d != Good {
		t.Errorf("6 clean runs: %q, want good", d)
	}
	if d := s.Decide(3, 0, true); d != Good {
		t.Errorf("final after 3 clean runs: %q, want good", d)
	}
	if err := (SPRT{PGood: 0.5, PBad: 0.4, Alpha: 0.05, Beta: 0.05, MaxRuns: 3}).Check(); err == nil {
		t.Error("good rate above bad rate accepted")
	}
}

// TestSearchFindsCulprit: over many simulated bisects of a 9-patch stack
// with the culprit anywhere, the culprit is named at least as often as the
// stated confidence says, and every step's prefix lies in the interval.
func TestSearchFindsCulprit(t *testing.T) {
	s := DefaultSPRT()
	const n = 4000
	rng := rand.New(rand.NewPCG(3, 4))
	right, minConf := 0, 1.0
	for i := range n {
		culprit := 1 + i%9
		o := &fakeOracle{culprit: culprit, pGood: s.PGood, pBad: s.PBad, rng: rng}
		res, err := Search(context.Background(), o, s, 0, 9, false, 3)
		if err != nil {
			t.Fatal(err)
		}
		if res.Culprit == culprit {
			right++
		}
		minConf = min(minConf, res.Confidence)
		for _, st := range res.Steps {
			if st.Prefix < 0 || st.Prefix > 9 || (!st.Assumed && st.Runs == 0) {
				t.Fatalf("step %+v", st)
			}
		}
	}
	got := float64(right) / n
	t.Logf("culprit right in %.4f of %d bisects; stated confidence at least %.3f", got, n, minConf)
	if got < minConf {
		t.Errorf("right %.4f < stated confidence %.3f", got, minConf)
	}
	if minConf < 0.78 {
		t.Errorf("confidence %.3f: at most 4 steps at 5.3%% each give at least 0.789", minConf)
	}
}

func TestSearchDeterministicAndSkips(t *testing.T) {
	// A failure every run from patch 4 on, never before: 3 steps, culprit 4.
	o := &fakeOracle{culprit: 4, pGood: 0, pBad: 1, rng: rand.New(rand.NewPCG(5, 6)), errEvery: 4, perPrefix: map[int]int{}}
	res, err := Search(context.Background(), o, DefaultSPRT(), 0, 8, true, 5)
	if err != nil {
		t.Fatal(err)
	}
	if res.Culprit != 4 {
		t.Fatalf("culprit %d, want 4: %+v", res.Culprit, res.Steps)
	}
	var skipped int
	for _, st := range res.Steps {
		skipped += st.Skipped
	}
	if skipped == 0 {
		t.Errorf("every 4th run failed to measure, but no step records a skip: %+v", res.Steps)
	}
	if res.Steps[0].Prefix != 8 || res.Steps[1].Prefix != 0 || res.Steps[0].Decision != Bad || res.Steps[1].Decision != Good {
		t.Errorf("verify: first steps %+v, want the bad end then the good end decided", res.Steps[:2])
	}

	// The "bad" end does not fail: nothing to bisect, said plainly.
	o = &fakeOracle{culprit: 100, pGood: 0, pBad: 1, rng: rand.New(rand.NewPCG(7, 8))}
	if _, err := Search(context.Background(), o, DefaultSPRT(), 0, 8, true, 5); err == nil || !strings.Contains(err.Error(), "prefix 8 was given as bad") {
		t.Errorf("good bad end: err %v", err)
	}
	// Runs that never measure end the search with an error, not a guess.
	o = &fakeOracle{culprit: 1, pBad: 1, rng: rand.New(rand.NewPCG(9, 10)), errEvery: 1}
	if _, err := Search(context.Background(), o, DefaultSPRT(), 0, 8, false, 2); err == nil || !strings.Contains(err.Error(), "measured nothing") {
		t.Errorf("all runs infra: err %v", err)
	}
	if _, err := Search(context.Background(), o, DefaultSPRT(), 3, 3, false, 2); err == nil {
		t.Error("empty interval accepted")
	}
}
