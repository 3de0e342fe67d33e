package record

import (
	"math"
	"reflect"
	"testing"

	"patchbay/triage"
)

func near(got, want, tol float64) bool { return math.Abs(got-want) <= tol }

func TestWilson(t *testing.T) {
	for _, tc := range []struct {
		k, n   int
		lo, hi float64
	}{
		{0, 10, 0, 0.2775},
		{5, 10, 0.2366, 0.7634},
		{10, 10, 0.7225, 1},
		{1, 1, 0.2065, 1},
		{0, 0, 0, 1},
		{3, 20, 0.0524, 0.3604},
	} {
		lo, hi := Wilson(tc.k, tc.n, Z95)
		if !near(lo, tc.lo, 1e-4) || !near(hi, tc.hi, 1e-4) {
			t.Errorf("Wilson(%d, %d) = (%.4f, %.4f), want (%.4f, %.4f)", tc.k, tc.n, lo, hi, tc.lo, tc.hi)
		}
	}
}

func TestFisherExact(t *testing.T) {
	for _, tc := range []struct {
		a, b, c, d int
		p          float64
		tol        float64
	}{
		{0, 10, 10, 0, 1.0825e-5, 1e-8}, // 2/C(20,10)
		{10, 0, 0, 10, 1.0825e-5, 1e-8},
		{3, 1, 1, 3, 0.4857, 1e-4}, // Fisher's tea tasting
		{1, 9, 11, 3, 0.002759, 1e-5},
		{0, 5, 0, 5, 1, 0},
		{2, 3, 2, 3, 1, 1e-12},
		{0, 0, 0, 0, 1, 0},
		{0, 0, 5, 5, 1, 0},
		{5, 0, 0, 0, 1, 0},
	} {
		p := FisherExact(tc.a, tc.b, tc.c, tc.d)
		if math.IsNaN(p) || !near(p, tc.p, tc.tol) {
			t.Errorf("FisherExact(%d, %d, %d, %d) = %.6g, want %.6g", tc.a, tc.b, tc.c, tc.d, p, tc.p)
		}
	}
}

func TestSummaryStats(t *testing.T) {
	warn := triage.Finding{Kind: "WARNING", Title: "WARNING in ext4_move_extents"}
	lockdep := triage.Finding{Kind: "lockdep", Title: "possible circular locking dependency detected"}
	run := func(o Outcome, f ...triage.Finding) *RunRecord { return &RunRecord{Outcome: o, Findings: f} }
	s := &Summary{
		Baseline: "base",
		Variants: []VariantSummary{
			{Name: "new", Runs: []*RunRecord{
				run(Crash, warn, warn, lockdep), run(Crash, warn), run(Pass), run(InfraError), run(Interrupted), run(BootError),
			}},
			{Name: "base", Runs: []*RunRecord{run(Pass, lockdep), run(Pass), run(Fail)}},
			{Name: "unbuilt"},
		},
	}
	st := s.Stats()
	if len(st) != 3 || st[0].Name != "new" || st[1].Name != "base" || st[2].Name != "unbuilt" {
		t.Fatalf("stats not in variant order: %+v", st)
	}
	n, b, u := st[0], st[1], st[2]
	if n.Runs != 6 || n.Judged != 4 || n.Failures != 3 || n.Counts[Crash] != 2 || n.Counts[InfraError] != 1 {
		t.Errorf("new: runs %d judged %d failures %d counts %v", n.Runs, n.Judged, n.Failures, n.Counts)
	}
	if !near(n.FailureRate, 0.75, 1e-12) {
		t.Errorf("new: rate %v", n.FailureRate)
	}
	if lo, hi := Wilson(3, 4, Z95); n.Lo != lo || n.Hi != hi {
		t.Errorf("new: interval (%v, %v), want (%v, %v)", n.Lo, n.Hi, lo, hi)
	}
	wantTitles := []TitleCount{{"WARNING in ext4_move_extents", 2}, {"possible circular locking dependency detected", 1}}
	if !reflect.DeepEqual(n.Titles, wantTitles) {
		t.Errorf("new: titles %v, want %v", n.Titles, wantTitles)
	}
	if !reflect.DeepEqual(n.NewVsBaseline, []string{"WARNING in ext4_move_extents"}) {
		t.Errorf("new: new vs baseline %v", n.NewVsBaseline)
	}
	if want := FisherExact(3, 1, 1, 2); n.PValueVsBaseline != want || n.Baseline {
		t.Errorf("new: p %v (want %v), baseline %v", n.PValueVsBaseline, want, n.Baseline)
	}
	if !b.Baseline || b.PValueVsBaseline != 1 || len(b.NewVsBaseline) != 0 || b.Failures != 1 || b.Judged != 3 {
		t.Errorf("base: %+v", b)
	}
	if u.Runs != 0 || u.Judged != 0 || u.FailureRate != 0 || u.Lo != 0 || u.Hi != 1 || u.PValueVsBaseline != 1 {
		t.Errorf("unbuilt: %+v", u)
	}
	if u.Titles == nil || u.NewVsBaseline == nil {
		t.Error("empty lists must be [] in JSON, not null")
	}

	// Without the baseline in the summary nothing is compared.
	s.Baseline = "gone"
	for _, v := range s.Stats() {
		if v.Baseline || v.PValueVsBaseline != 1 || len(v.NewVsBaseline) != 0 {
			t.Errorf("no baseline: %+v", v)
		}
	}
}

// TestNewInEveryRun: at 2 runs each Fisher says p = 0.33; the report says
// what was seen instead.
func TestNewInEveryRun(t *testing.T) {
	bug := triage.Finding{Kind: "BUG", Title: "kernel BUG in ext4_move_extents"}
	warn := triage.Finding{Kind: "WARNING", Title: "WARNING in jbd2_journal_dirty_metadata"}
	s := &Summary{Baseline: "base", Variants: []VariantSummary{
		{Name: "base", Runs: []*RunRecord{{Outcome: Pass}, {Outcome: Pass}}},
		{Name: "v", Runs: []*RunRecord{{Outcome: Crash, Findings: []triage.Finding{bug, warn}}, {Outcome: Crash, Findings: []triage.Finding{bug}}, {Outcome: InfraError}}},
	}}
	st := s.Stats()
	want := []string{"new: kernel BUG in ext4_move_extents in 2 of 2 runs, never in 2 baseline runs"}
	if !reflect.DeepEqual(st[1].NewEveryRun, want) {
		t.Errorf("new every run %q, want %q", st[1].NewEveryRun, want)
	}
	if p := st[1].PValueVsBaseline; p < 0.3 {
		t.Errorf("p %v: the point is that it is large", p)
	}
	if st[0].NewEveryRun == nil || len(st[0].NewEveryRun) != 0 {
		t.Errorf("baseline: %v", st[0].NewEveryRun)
	}
}
