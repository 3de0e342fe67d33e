// Package bisect finds the first patch of a stack at which a probabilistic
// failure appears. Each step asks an Oracle for runs of one prefix of the
// stack until a sequential Rule decides "good" or "bad" at stated error
// rates; the search halves the interval between a good and a bad prefix.
// It knows nothing of kernels or VMs: the CLI supplies the oracle.
package bisect

import (
	"fmt"
	"math"
)

// Decision is a step's verdict on one prefix.
type Decision string

const (
	Undecided Decision = ""
	Good      Decision = "good" // fails no more often than the good rate
	Bad       Decision = "bad"  // fails as often as the bad rate
)

// Rule decides a step from its runs so far. final is true when no more
// runs will come (the step's budget is spent): the rule must decide then.
type Rule interface {
	Decide(runs, fails int, final bool) Decision
	// Errors are the rule's bounds on P(Bad | the prefix is good) and
	// P(Good | the prefix is bad), for the report.
	Errors() (falseBad, falseGood float64)
}

// SPRT is Wald's sequential probability ratio test of a failure rate:
// H0 p = PGood against H1 p = PBad, stopping when the log-likelihood ratio
// leaves (log(Beta/(1-Alpha)), log((1-Beta)/Alpha)). At MaxRuns it decides
// by the sign of the ratio; the simulation test measures the error rates
// with that truncation.
type SPRT struct {
	PGood, PBad float64 // failure rate of a good and of a bad prefix
	Alpha, Beta float64 // target P(Bad | good), P(Good | bad)
	MaxRuns     int
}

// DefaultSPRT suits a failure the bad end shows in about 40% of runs and
// good prefixes almost never: one failure is strong evidence of "bad",
// six clean runs in a row of "good".
func DefaultSPRT() SPRT {
	return SPRT{PGood: 0.01, PBad: 0.4, Alpha: 0.05, Beta: 0.05, MaxRuns: 20}
}

// Check reports parameters out of range.
func (s SPRT) Check() error {
	switch {
	case !(s.PGood > 0 && s.PGood < s.PBad && s.PBad < 1):
		return fmt.Errorf("failure rates: want 0 < good (%g) < bad (%g) < 1", s.PGood, s.PBad)
	case !(s.Alpha > 0 && s.Alpha < 0.5 && s.Beta > 0 && s.Beta < 0.5):
		return fmt.Errorf("error rates alpha %g, beta %g: want each in (0, 0.5)", s.Alpha, s.Beta)
	case s.MaxRuns < 1:
		return fmt.Errorf("max runs %d: want at least 1", s.MaxRuns)
	}
	return nil
}

// LLR is the log-likelihood ratio of "bad" over "good" after runs runs
// with fails failures.
func (s SPRT) LLR(runs, fails int) float64 {
	return float64(fails)*math.Log(s.PBad/s.PGood) + float64(runs-fails)*math.Log((1-s.PBad)/(1-s.PGood))
}

// Decide implements Rule.
func (s SPRT) Decide(runs, fails int, final bool) Decision {
	l := s.LLR(runs, fails)
	switch {
	case l >= math.Log((1-s.Beta)/s.Alpha):
		return Bad
	case l <= math.Log(s.Beta/(1-s.Alpha)):
		return Good
	case final || runs >= s.MaxRuns:
		if l >= 0 {
			return Bad
		}
		return Good
	}
	return Undecided
}

// Errors implements Rule: Wald's bounds, alpha/(1-beta) and beta/(1-alpha).
func (s SPRT) Errors() (float64, float64) {
	return s.Alpha / (1 - s.Beta), s.Beta / (1 - s.Alpha)
}
