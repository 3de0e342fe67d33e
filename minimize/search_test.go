package minimize

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"patchbay/casespec"
	"patchbay/harness"
	"patchbay/record"
)

func seeded(t *testing.T) *harness.Case {
	t.Helper()
	c, err := harness.LoadCase("../harness/testdata/seeded-bugs/case.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// bugNeeds is a deterministic oracle: the "bug" shows only with an mmap
// writer, a defrag worker, eviction, at least 16 blocks and 4 s.
func bugNeeds(w casespec.WorkloadSpec) bool {
	return w.MmapWriters >= 1 && w.Defrag.Workers >= 1 && w.Defrag.EvictOneIn > 0 && w.Blocks >= 16 && w.Duration.D() >= 4*time.Second
}

func TestSearchShrinksToTheOraclesEdge(t *testing.T) {
	c := seeded(t)
	runs := 0
	s := Search{
		Rule:  Rule{N: 3, K: 2},
		Valid: validator(c, "lost-dirty", t.TempDir()),
		Trial: func(_ context.Context, w casespec.WorkloadSpec, i int) (bool, error) {
			runs++
			return bugNeeds(w), nil
		},
	}
	res, err := s.Run(context.Background(), c.Workload)
	if err != nil {
		t.Fatal(err)
	}
	got := res.Smallest
	want := c.Workload
	want.Duration = casespec.Duration(5 * time.Second) // 20 -> 10 -> 5 (2 loses the bug)
	want.Files, want.Blocks = 1, 16
	want.MmapWriters, want.PwriteWriters = 1, 0
	want.Defrag.RangeBlocks = 1
	want.CheckEvery, want.MsyncEvery = 0, 0
	if got != want {
		t.Fatalf("smallest\n got %+v\nwant %+v\nchanges %v", got, want, res.Changes)
	}
	if res.Runs != 3 || res.Failures != 3 || res.Rate != 1 || res.Lo < 0.4 {
		t.Errorf("measured %d/%d rate %v [%v,%v]", res.Failures, res.Runs, res.Rate, res.Lo, res.Hi)
	}
	// Early stopping: a deterministic candidate takes 2 runs either way.
	for _, c := range res.Tried {
		if c.Runs != 2 {
			t.Errorf("%s: %d runs, want 2 (decided after 2)", c.Change, c.Runs)
		}
	}
	if want := 2*len(res.Tried) + 3; runs != want {
		t.Errorf("%d trial runs, want %d", runs, want)
	}
	if !slices.Contains(res.Changes, "defrag.range_blocks 2 -> 1") || slices.ContainsFunc(res.Changes, func(s string) bool { return strings.HasPrefix(s, "defrag.workers") }) {
		t.Errorf("changes: %v", res.Changes)
	}
}

func TestSearchRefusesAStartThatDoesNotReproduce(t *testing.T) {
	c := seeded(t)
	calls := 0
	s := Search{Rule: Rule{N: 4, K: 3}, Trial: func(_ context.Context, _ casespec.WorkloadSpec, i int) (bool, error) {
		calls++
		return i == 0, nil // fails once, then never
	}}
	_, err := s.Run(context.Background(), c.Workload)
	if !errors.Is(err, ErrNotReproducible) {
		t.Fatalf("err %v", err)
	}
	// 1 fail + 2 passes: 3 of 4 is out of reach after the third run.
	if calls != 3 {
		t.Errorf("%d runs, want 3", calls)
	}
}

func TestSearchStopsAtMaxCandidates(t *testing.T) {
	c := seeded(t)
	s := Search{Rule: Rule{N: 1, K: 1}, MaxCandidates: 3, Trial: func(context.Context, casespec.WorkloadSpec, int) (bool, error) { return true, nil }}
	res, err := s.Run(context.Background(), c.Workload)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Truncated || len(res.Tried) != 4 || len(res.Changes) != 3 {
		t.Fatalf("truncated %v, tried %d, changes %v", res.Truncated, len(res.Tried), res.Changes)
	}
	if res.Smallest.Duration.D() != 2*time.Second {
		t.Errorf("duration %s, want 2s (20 -> 10 -> 5 -> 2)", res.Smallest.Duration.D())
	}
	if (Rule{N: 2, K: 3}).Check() == nil || (Rule{N: 0, K: 0}).Check() == nil {
		t.Error("bad rules accepted")
	}
}

// The rule's acceptance probability is what a simulation of runs failing
// independently at rate p shows, early stopping included.
func TestRuleAcceptProbSimulated(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, r := range []Rule{{3, 2}, {5, 3}, {4, 1}, {2, 2}} {
		for _, p := range []float64{0.1, 0.3, 0.5, 0.8} {
			s := Search{Rule: r, Trial: func(context.Context, casespec.WorkloadSpec, int) (bool, error) { return rng.Float64() < p, nil }}
			const n = 20000
			kept := 0
			for range n {
				c, _ := s.try(context.Background(), "sim", casespec.WorkloadSpec{})
				if c.Kept {
					kept++
				}
			}
			want := r.AcceptProb(p)
			sd := math.Sqrt(want * (1 - want) / n)
			if got := float64(kept) / n; math.Abs(got-want) > 4*sd+1e-9 {
				t.Errorf("rule %d of %d, p %.1f: kept %.4f, formula %.4f", r.K, r.N, p, got, want)
			}
		}
	}
	if got := (Rule{3, 2}).AcceptProb(0.5); math.Abs(got-0.5) > 1e-12 {
		t.Errorf("2 of 3 at 0.5: %v", got)
	}
}

func TestWriteCaseLoadsWithTheNormalLoader(t *testing.T) {
	c := seeded(t)
	w := c.Workload
	w.Duration, w.Files, w.Blocks, w.PwriteWriters = casespec.Duration(8*time.Second), 2, 64, 0
	dir := filepath.Join(t.TempDir(), "elsewhere")
	m, err := WriteCase(c, "lost-dirty", w, dir)
	if err != nil {
		t.Fatal(err)
	}
	if m.Workload != w {
		t.Errorf("workload\n got %+v\nwant %+v", m.Workload, w)
	}
	if names := m.VariantNames(); len(names) != 1 || names[0] != "lost-dirty" || m.Baseline != "lost-dirty" {
		t.Errorf("variants %v baseline %q", names, m.Baseline)
	}
	// Same kernel: same source, fragments and patch bytes.
	orig, err := c.KernelSpecs([]string{"lost-dirty"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := m.KernelSpecs(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(orig[0].Patches, got[0].Patches) || !slices.Equal(orig[0].Fragments, got[0].Fragments) || orig[0].Source != got[0].Source {
		t.Errorf("kernel spec\n got %+v\nwant %+v", got[0], orig[0])
	}
	if m.Variants["lost-dirty"].Expect.MaxBadBlocks == nil || *m.Variants["lost-dirty"].Expect.MaxBadBlocks != 0 {
		t.Errorf("expectations lost")
	}
	// A candidate the loader refuses is not tried.
	bad := w
	bad.Epochs = 5
	if validator(c, "lost-dirty", dir)(bad) == nil {
		t.Error("epochs > files accepted")
	}
}

func TestSignature(t *testing.T) {
	orig := &record.RunRecord{Outcome: record.Fail, Reasons: []string{
		"bad blocks = 9, expected at most 0",
		"writer 0 (mmap): 2 of 50 read-backs did not return the last write: first x",
		"verify dropcache: 9 bad blocks map[zeros:9]",
	}}
	s := SignatureOf(orig)
	if s.Outcome != record.Fail || !slices.Equal(s.Kinds, []string{"data"}) {
		t.Fatalf("signature %+v", s)
	}
	for _, tc := range []struct {
		rec  record.RunRecord
		want bool
	}{
		{record.RunRecord{Outcome: record.Fail, Reasons: []string{"verify live: 1 bad blocks map[older:1]"}}, true},
		{record.RunRecord{Outcome: record.Fail, Reasons: []string{"moves = 0, expected at least 1"}}, false},
		{record.RunRecord{Outcome: record.Crash, Reasons: []string{"bad blocks = 1, expected at most 0"}}, false},
		{record.RunRecord{Outcome: record.Pass}, false},
	} {
		if got := s.Matches(&tc.rec); got != tc.want {
			t.Errorf("%v %v: %v, want %v", tc.rec.Outcome, tc.rec.Reasons, got, tc.want)
		}
	}
}
