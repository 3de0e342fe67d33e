package bisect

import (
	"context"
	"fmt"
)

// Oracle runs the variant's workload once on the kernel of a prefix (the
// first n patches of the stack) and says whether the run showed the
// failure. A run that measured nothing (the host failed, the user stopped
// it) returns an error: it is not counted.
type Oracle interface {
	Run(ctx context.Context, prefix, attempt int) (failed bool, err error)
}

// Step is the evidence of one decided prefix.
type Step struct {
	Prefix   int      `json:"prefix"` // patches applied
	Runs     int      `json:"runs"`
	Fails    int      `json:"fails"`
	Decision Decision `json:"decision"`
	LLR      float64  `json:"llr,omitempty"`
	Skipped  int      `json:"skipped"` // runs that measured nothing
	Assumed  bool     `json:"assumed,omitempty"`
}

// Result names the culprit: the first patch (1-based) whose prefix is bad
// while the one before is good.
type Result struct {
	Culprit int `json:"culprit"`
	// Confidence is a lower bound on P(culprit is right) when failures are
	// monotone in the prefix and each prefix's rate is at most the good
	// rate or at least the bad rate: 1 minus the sum of the decided steps'
	// error bounds.
	Confidence float64 `json:"confidence"`
	Steps      []Step  `json:"steps"`
}

// Search bisects [good, bad]: prefix good is taken as good and prefix bad
// as bad unless verify is set, in which case both ends are decided by runs
// first and a contradiction is an error. maxSkips bounds the runs a step
// may lose to errors before the search gives up.
func Search(ctx context.Context, o Oracle, r Rule, good, bad int, verify bool, maxSkips int) (Result, error) {
	if good < 0 || bad <= good {
		return Result{}, fmt.Errorf("want 0 <= good (%d) < bad (%d)", good, bad)
	}
	var res Result
	falseBad, falseGood := r.Errors()
	errSum := 0.0
	decide := func(prefix int) (Decision, error) {
		st := Step{Prefix: prefix}
		for st.Decision == Undecided {
			failed, err := o.Run(ctx, prefix, st.Runs+st.Skipped)
			if err != nil {
				if ctx.Err() != nil {
					return Undecided, ctx.Err()
				}
				st.Skipped++
				if st.Skipped > maxSkips {
					res.Steps = append(res.Steps, st)
					return Undecided, fmt.Errorf("prefix %d: %d runs measured nothing, last: %w", prefix, st.Skipped, err)
				}
				continue
			}
			st.Runs++
			if failed {
				st.Fails++
			}
			st.Decision = r.Decide(st.Runs, st.Fails, false)
		}
		if s, ok := r.(SPRT); ok {
			st.LLR = s.LLR(st.Runs, st.Fails)
		}
		if st.Decision == Bad {
			errSum += falseBad
		} else {
			errSum += falseGood
		}
		res.Steps = append(res.Steps, st)
		return st.Decision, nil
	}
	if verify {
		for _, end := range []struct {
			prefix int
			want   Decision
		}{{bad, Bad}, {good, Good}} {
			d, err := decide(end.prefix)
			if err != nil {
				return res, err
			}
			if d != end.want {
				return res, fmt.Errorf("prefix %d was given as %s but decided %s: nothing to bisect", end.prefix, end.want, d)
			}
		}
	} else {
		res.Steps = append(res.Steps, Step{Prefix: good, Decision: Good, Assumed: true}, Step{Prefix: bad, Decision: Bad, Assumed: true})
	}
	for bad-good > 1 {
		mid := good + (bad-good)/2
		d, err := decide(mid)
		if err != nil {
			return res, err
		}
		if d == Bad {
			bad = mid
		} else {
			good = mid
		}
	}
	res.Culprit = bad
	res.Confidence = max(0, 1-errSum)
	return res, nil
}
