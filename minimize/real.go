package minimize

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"patchbay/casespec"
	"patchbay/harness"
	"patchbay/record"
	"patchbay/report"
	"patchbay/rundir"
)

// Signature is how a run failed: its outcome and the kinds of its reasons
// (data, fsck, moves, a finding's title, ...). A candidate fails "the same
// way" when its outcome is the same and it shares a kind: a shrunk workload
// that only breaks min_moved has lost the bug, not reproduced it.
type Signature struct {
	Outcome record.Outcome `json:"outcome"`
	Kinds   []string       `json:"kinds"`
}

// SignatureOf classifies a run record.
func SignatureOf(rec *record.RunRecord) Signature {
	s := Signature{Outcome: rec.Outcome}
	for _, r := range rec.Reasons {
		k := reasonKind(r)
		if !slices.Contains(s.Kinds, k) {
			s.Kinds = append(s.Kinds, k)
		}
	}
	slices.Sort(s.Kinds)
	return s
}

// Matches reports whether rec failed the way s did.
func (s Signature) Matches(rec *record.RunRecord) bool {
	if rec.Outcome != s.Outcome || !record.IsFailure(rec.Outcome) {
		return false
	}
	for _, r := range rec.Reasons {
		if slices.Contains(s.Kinds, reasonKind(r)) {
			return true
		}
	}
	return false
}

// reasonKind maps a verdict reason (harness.Judge) to its kind.
func reasonKind(r string) string {
	switch {
	case strings.Contains(r, "bad blocks"), strings.Contains(r, "read-backs did not return"):
		return "data"
	case strings.HasPrefix(r, "e2fsck"):
		return "fsck"
	case strings.HasPrefix(r, "moves = "):
		return "moves"
	case strings.Contains(r, "refusals = "):
		return "refusals"
	case strings.HasPrefix(r, "a_ops transitions"), strings.HasPrefix(r, "work files moved"):
		return "transitions"
	case strings.HasPrefix(r, "setup: "):
		return "setup"
	case strings.HasPrefix(r, "incomplete: "):
		return "incomplete"
	case strings.HasPrefix(r, "writer "):
		return "write error"
	}
	return r // a finding's title, a crash or hang title: already normalized
}

// Real runs candidates on the variant's kernel through the harness: attempt
// i of a candidate is one run with the original seed + i.
type Real struct {
	Case      *harness.Case
	Variant   string
	Seed      uint64
	Signature Signature
	// Options carry CacheDir, Accel, GuestBin, Progress and ResultsDir
	// (where the candidates' results go).
	Options harness.Options
}

// Trial is a Trial on a real kernel. An infra-error or interrupted run is
// an error: it says nothing about the candidate.
func (r *Real) Trial(ctx context.Context, w casespec.WorkloadSpec, i int) (bool, error) {
	c := *r.Case
	c.Workload = w
	opt := r.Options
	opt.Variants = []string{r.Variant}
	opt.Only = []record.Job{{Variant: r.Variant, Index: i, Seed: r.Seed + uint64(i)}}
	opt.Seed = r.Seed
	opt.Jobs = 1
	sum, err := harness.RunCase(ctx, &c, opt)
	if err != nil {
		return false, err
	}
	// Probe KVM once: later candidates use what the first one found.
	if r.Options.Accel == "" || r.Options.Accel == "auto" {
		r.Options.Accel = sum.Accel
	}
	// The candidate's results as `patchbay run` leaves them, to look at later.
	if err := report.Write(sum.Dir, sum); err != nil {
		return false, err
	}
	if len(sum.Variants) != 1 || len(sum.Variants[0].Runs) != 1 {
		if len(sum.Variants) == 1 && sum.Variants[0].BuildError != "" {
			return false, fmt.Errorf("kernel build: %s", sum.Variants[0].BuildError)
		}
		return false, fmt.Errorf("%s: no run recorded", sum.Dir)
	}
	rec := sum.Variants[0].Runs[0]
	if !record.IsJudged(rec.Outcome) {
		return false, fmt.Errorf("run %s: %s: %s", filepath.Join(sum.Dir, rec.Dir), rec.Outcome, strings.Join(rec.Reasons, "; "))
	}
	return r.Signature.Matches(rec), nil
}

// Report is minimize.json, written beside the minimized case.
type Report struct {
	Run       string    `json:"run"` // the run folder minimized
	Variant   string    `json:"variant"`
	Seed      uint64    `json:"seed"`
	Signature Signature `json:"signature"`
	*Result
}

// Minimize shrinks the recorded failing run r and writes the smallest case
// to out/case.yaml and the search to out/minimize.json; candidates' results
// go under out/runs.
func Minimize(ctx context.Context, r *rundir.Run, s Search, opt harness.Options, out string) (*Report, error) {
	rec := r.Record
	if !record.IsFailure(rec.Outcome) {
		return nil, fmt.Errorf("%s: the run's outcome is %s: nothing to minimize", r.Dir, rec.Outcome)
	}
	if r.Case.Workload.Kind != casespec.WorkloadPatchbay {
		return nil, fmt.Errorf("%s: workload.kind %s: minimize shrinks the pbguest workload only", r.Case.File, r.Case.Workload.Kind)
	}
	opt.ResultsDir = filepath.Join(out, "runs")
	real := &Real{Case: r.Case, Variant: rec.Variant, Seed: rec.Seed, Signature: SignatureOf(rec), Options: opt}
	s.Trial = real.Trial
	s.Valid = validator(r.Case, rec.Variant, out)
	rep := &Report{Run: r.Dir, Variant: rec.Variant, Seed: rec.Seed, Signature: real.Signature}
	res, err := s.Run(ctx, r.Case.Workload)
	rep.Result = res
	if res != nil {
		if werr := writeReport(filepath.Join(out, "minimize.json"), rep); werr != nil && err == nil {
			err = werr
		}
	}
	if err != nil {
		return rep, err
	}
	if _, err := WriteCase(r.Case, rec.Variant, res.Smallest, out); err != nil {
		return rep, fmt.Errorf("writing the minimized case: %w", err)
	}
	return rep, nil
}

func writeReport(path string, rep *Report) error {
	data, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}

// Summary prints the search in a few lines.
func (rep *Report) Summary(w io.Writer) {
	res := rep.Result
	fmt.Fprintf(w, "minimized %s (%s, seed %d, failing as %s %v) with rule %d of %d:\n", rep.Run, rep.Variant, rep.Seed, rep.Signature.Outcome, rep.Signature.Kinds, res.K, res.N)
	for _, c := range res.Changes {
		fmt.Fprintf(w, "  %s\n", c)
	}
	runs := 0
	for _, c := range res.Tried {
		runs += c.Runs
	}
	fmt.Fprintf(w, "%d candidates tried (%d runs), %d changes kept", len(res.Tried)-1, runs, len(res.Changes))
	if res.Truncated {
		fmt.Fprint(w, " (stopped at --max-candidates)")
	}
	fmt.Fprintf(w, "\nsmallest case: %d of %d runs failed (%.0f%%, 95%% interval %.0f-%.0f%%)\n", res.Failures, res.Runs, 100*res.Rate, 100*res.Lo, 100*res.Hi)
}
