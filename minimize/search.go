// Package minimize shrinks a failing run's workload, one parameter at a
// time, while the failure stays reproducible at a stated rate.
package minimize

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	"patchbay/casespec"
	"patchbay/record"
)

// Rule: a candidate reproduces when at least K of N runs fail the same way.
// Runs stop as soon as the answer is known (K failures, or too few runs
// left to reach K).
type Rule struct{ N, K int }

// Check rejects rules that cannot decide.
func (r Rule) Check() error {
	if r.N < 1 || r.K < 1 || r.K > r.N {
		return fmt.Errorf("rule %d of %d: want 1 <= k <= n", r.K, r.N)
	}
	return nil
}

// AcceptProb is the probability that a candidate whose runs fail
// independently with probability p passes the rule: P(Binomial(N, p) >= K).
// Early stopping does not change it.
func (r Rule) AcceptProb(p float64) float64 {
	s := 0.0
	for i := r.K; i <= r.N; i++ {
		s += binom(r.N, i) * math.Pow(p, float64(i)) * math.Pow(1-p, float64(r.N-i))
	}
	return s
}

func binom(n, k int) float64 {
	c := 1.0
	for i := 1; i <= k; i++ {
		c = c * float64(n-k+i) / float64(i)
	}
	return c
}

// Trial runs the workload once (attempt i of a candidate, 0-based) and
// reports whether the run failed the same way as the original.
type Trial func(ctx context.Context, w casespec.WorkloadSpec, i int) (bool, error)

// Search is one minimization.
type Search struct {
	Rule Rule
	// MaxCandidates bounds the candidates tried after the start (0: no bound).
	MaxCandidates int
	// MeasureRuns are the runs of the smallest workload that measure its
	// rate at the end (0: Rule.N).
	MeasureRuns int
	// Valid says whether a candidate is a valid case (nil: all are).
	Valid func(w casespec.WorkloadSpec) error
	Trial Trial
	Log   io.Writer
}

// Candidate is one workload tried and what its runs showed.
type Candidate struct {
	Change   string                `json:"change"` // e.g. "duration 20s -> 10s"
	Workload casespec.WorkloadSpec `json:"workload"`
	Runs     int                   `json:"runs"`
	Failures int                   `json:"failures"`
	Kept     bool                  `json:"kept"`
}

// Result is what a search found.
type Result struct {
	Rule      Rule                  `json:"-"`
	N         int                   `json:"rule_n"`
	K         int                   `json:"rule_k"`
	Start     casespec.WorkloadSpec `json:"start"`
	Smallest  casespec.WorkloadSpec `json:"smallest"`
	Changes   []string              `json:"changes"` // the kept changes, in order
	Tried     []Candidate           `json:"tried"`   // the start first
	Runs      int                   `json:"measured_runs"`
	Failures  int                   `json:"measured_failures"`
	Rate      float64               `json:"measured_rate"`
	Lo        float64               `json:"measured_lo"` // Wilson 95% interval of Rate
	Hi        float64               `json:"measured_hi"`
	Truncated bool                  `json:"truncated"` // MaxCandidates ended the search
}

// ErrNotReproducible is returned when the start itself does not meet the rule.
var ErrNotReproducible = errors.New("the failure does not reproduce at the rule's rate")

// Run shrinks start greedily: for each knob in order, shrink it (halve a
// number, drop a feature) as long as the candidate still reproduces, then
// go on to the next; passes repeat until one keeps nothing.
func (s *Search) Run(ctx context.Context, start casespec.WorkloadSpec) (*Result, error) {
	if err := s.Rule.Check(); err != nil {
		return nil, err
	}
	res := &Result{Rule: s.Rule, N: s.Rule.N, K: s.Rule.K, Start: start}
	first, err := s.try(ctx, "start", start)
	if err != nil {
		return nil, err
	}
	res.Tried = append(res.Tried, first)
	if !first.Kept {
		return res, fmt.Errorf("%w: %d of %d runs of the start failed, need %d", ErrNotReproducible, first.Failures, first.Runs, s.Rule.K)
	}
	cur := start
	tried := 0
search:
	for progress := true; progress; {
		progress = false
		for _, k := range knobs {
			for {
				next, change, ok := k.shrink(cur)
				if !ok {
					break
				}
				if s.Valid != nil && s.Valid(next) != nil {
					break
				}
				if s.MaxCandidates > 0 && tried >= s.MaxCandidates {
					res.Truncated = true
					break search
				}
				tried++
				c, err := s.try(ctx, change, next)
				if err != nil {
					return res, err
				}
				res.Tried = append(res.Tried, c)
				if !c.Kept {
					break
				}
				cur = next
				res.Changes = append(res.Changes, change)
				progress = true
			}
		}
	}
	res.Smallest = cur
	n := s.MeasureRuns
	if n < 1 {
		n = s.Rule.N
	}
	for i := 0; i < n; i++ {
		failed, err := s.Trial(ctx, cur, s.Rule.N+i)
		if err != nil {
			return res, err
		}
		res.Runs++
		if failed {
			res.Failures++
		}
	}
	res.Rate = float64(res.Failures) / float64(res.Runs)
	res.Lo, res.Hi = record.Wilson(res.Failures, res.Runs, record.Z95)
	s.logf("smallest: %d of %d runs failed (%.0f%%, 95%% interval %.0f-%.0f%%)", res.Failures, res.Runs, 100*res.Rate, 100*res.Lo, 100*res.Hi)
	return res, nil
}

// try runs a candidate until the rule decides.
func (s *Search) try(ctx context.Context, change string, w casespec.WorkloadSpec) (Candidate, error) {
	c := Candidate{Change: change, Workload: w}
	for i := 0; i < s.Rule.N; i++ {
		if c.Failures >= s.Rule.K || c.Failures+(s.Rule.N-i) < s.Rule.K {
			break
		}
		failed, err := s.Trial(ctx, w, i)
		if err != nil {
			return c, fmt.Errorf("%s, run %d: %w", change, i, err)
		}
		c.Runs++
		if failed {
			c.Failures++
		}
	}
	c.Kept = c.Failures >= s.Rule.K
	verdict := "dropped"
	if c.Kept {
		verdict = "kept"
	}
	s.logf("%s: %d of %d runs failed: %s", change, c.Failures, c.Runs, verdict)
	return c, nil
}

func (s *Search) logf(format string, args ...any) {
	if s.Log != nil {
		fmt.Fprintf(s.Log, "[minimize] "+format+"\n", args...)
	}
}

// knob is one parameter the search shrinks; shrink returns the next smaller
// workload and a description, or false when it cannot shrink further.
type knob struct {
	name   string
	shrink func(w casespec.WorkloadSpec) (casespec.WorkloadSpec, string, bool)
}

// halve shrinks an int field: n -> n/2, not below min.
func halve(name string, min int, field func(*casespec.WorkloadSpec) *int) knob {
	return knob{name, func(w casespec.WorkloadSpec) (casespec.WorkloadSpec, string, bool) {
		p := field(&w)
		if *p <= min {
			return w, "", false
		}
		old := *p
		*p = max(old/2, min)
		return w, fmt.Sprintf("%s %d -> %d", name, old, *p), true
	}}
}

// drop turns a feature off (an int setting to 0).
func drop(name string, field func(*casespec.WorkloadSpec) *int) knob {
	return knob{name, func(w casespec.WorkloadSpec) (casespec.WorkloadSpec, string, bool) {
		p := field(&w)
		if *p == 0 {
			return w, "", false
		}
		old := *p
		*p = 0
		return w, fmt.Sprintf("%s %d -> off", name, old), true
	}}
}

// decrement removes one worker, keeping at least one writer.
func decrement(name string, field func(*casespec.WorkloadSpec) *int) knob {
	return knob{name, func(w casespec.WorkloadSpec) (casespec.WorkloadSpec, string, bool) {
		p := field(&w)
		if *p == 0 {
			return w, "", false
		}
		*p--
		if w.MmapWriters+w.PwriteWriters == 0 {
			return w, "", false
		}
		return w, fmt.Sprintf("%s %d -> %d", name, *p+1, *p), true
	}}
}

// knobs, cheapest first: a shorter duration makes every later try cheaper.
var knobs = []knob{
	{"duration", func(w casespec.WorkloadSpec) (casespec.WorkloadSpec, string, bool) {
		d := w.Duration.D()
		half := (d / 2).Truncate(time.Second)
		if half < time.Second {
			return w, "", false
		}
		w.Duration = casespec.Duration(half)
		return w, fmt.Sprintf("duration %s -> %s", d, half), true
	}},
	{"files", func(w casespec.WorkloadSpec) (casespec.WorkloadSpec, string, bool) {
		if w.Files <= 1 {
			return w, "", false
		}
		old := w.Files
		w.Files /= 2
		w.Epochs = min(w.Epochs, w.Files) // an epoch needs a file of its own
		return w, fmt.Sprintf("files %d -> %d", old, w.Files), true
	}},
	halve("blocks", 1, func(w *casespec.WorkloadSpec) *int { return &w.Blocks }),
	halve("epochs", 1, func(w *casespec.WorkloadSpec) *int { return &w.Epochs }),
	decrement("mmap_writers", func(w *casespec.WorkloadSpec) *int { return &w.MmapWriters }),
	decrement("pwrite_writers", func(w *casespec.WorkloadSpec) *int { return &w.PwriteWriters }),
	decrement("defrag.workers", func(w *casespec.WorkloadSpec) *int { return &w.Defrag.Workers }),
	halve("defrag.range_blocks", 1, func(w *casespec.WorkloadSpec) *int { return &w.Defrag.RangeBlocks }),
	drop("check_every (read-backs)", func(w *casespec.WorkloadSpec) *int { return &w.CheckEvery }),
	drop("msync_every", func(w *casespec.WorkloadSpec) *int { return &w.MsyncEvery }),
	drop("fsync_every", func(w *casespec.WorkloadSpec) *int { return &w.FsyncEvery }),
	drop("fdatasync_every", func(w *casespec.WorkloadSpec) *int { return &w.FdatasyncEvery }),
	drop("defrag.evict_one_in", func(w *casespec.WorkloadSpec) *int { return &w.Defrag.EvictOneIn }),
	{"defrag.rejournal", func(w casespec.WorkloadSpec) (casespec.WorkloadSpec, string, bool) {
		if !w.Defrag.Rejournal {
			return w, "", false
		}
		w.Defrag.Rejournal = false
		return w, "defrag.rejournal -> off", true
	}},
}
