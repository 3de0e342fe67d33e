package minimize_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"patchbay/harness"
	"patchbay/minimize"
	"patchbay/record"
	"patchbay/report"
	"patchbay/rundir"
)

type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestMinimizeLostDirty: a failing 8 s lost-dirty run of the seeded bugs
// is minimized on the real kernel (rule 1 of 1, at most 3 candidates) to a
// strictly smaller case that loads with the normal loader and still fails.
func TestMinimizeLostDirty(t *testing.T) {
	if os.Getenv("PATCHBAY_E2E") == "" {
		t.Skip("set PATCHBAY_E2E=1: builds kernels and boots QEMU")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	cache := harness.DefaultCacheDir()
	c, err := harness.LoadCase("../harness/testdata/seeded-bugs/case.yaml")
	if err != nil {
		t.Fatal(err)
	}
	bin, err := harness.EnsureGuest(ctx, cache, "")
	if err != nil {
		t.Fatal(err)
	}
	opt := harness.Options{CacheDir: cache, Accel: "auto", GuestBin: bin, Progress: testLog{t}}
	first := opt
	first.ResultsDir, first.Runs, first.Seed = t.TempDir(), 1, 100
	first.Variants, first.Duration = []string{"lost-dirty"}, 8*time.Second
	sum, err := harness.RunCase(ctx, c, first)
	if err != nil {
		t.Fatal(err)
	}
	if err := report.Write(sum.Dir, sum); err != nil {
		t.Fatal(err)
	}
	rec := sum.Variants[0].Runs[0]
	if rec.Outcome != record.Fail {
		t.Fatalf("the 8 s lost-dirty run did not fail: %s %v", rec.Outcome, rec.Reasons)
	}
	run, err := rundir.Load(filepath.Join(sum.Dir, rec.Dir), "")
	if err != nil {
		t.Fatal(err)
	}
	if run.Case.Workload.Duration.D() != 8*time.Second {
		t.Fatalf("the run's workload was not taken from its summary: %s", run.Case.Workload.Duration.D())
	}
	out := filepath.Join(t.TempDir(), "minimized")
	start := time.Now()
	rep, err := minimize.Minimize(ctx, run, minimize.Search{Rule: minimize.Rule{N: 1, K: 1}, MaxCandidates: 3, MeasureRuns: 1, Log: testLog{t}}, opt, out)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	rep.Summary(&b)
	t.Logf("minimize took %s:\n%s", time.Since(start).Round(time.Second), b.String())
	if len(rep.Changes) == 0 {
		t.Fatalf("nothing shrunk: %+v", rep.Tried)
	}
	m, err := harness.LoadCase(filepath.Join(out, minimize.CaseFile))
	if err != nil {
		t.Fatal(err)
	}
	w, w0 := m.Workload, run.Case.Workload
	if w == w0 || w.Duration > w0.Duration || w.Files > w0.Files || w.Blocks > w0.Blocks {
		t.Fatalf("not strictly smaller:\n%+v\n%+v", w, w0)
	}
	if rep.Runs != 1 || rep.Failures != 1 {
		t.Fatalf("smallest case measured %d of %d failing", rep.Failures, rep.Runs)
	}
	if _, err := os.Stat(filepath.Join(out, "minimize.json")); err != nil {
		t.Fatal(err)
	}
}
