package harness

import (
	"context"
	"testing"
	"time"

	"patchbay/casespec"
	"patchbay/record"
)

// TestWorkloadOptionsEndToEnd runs the case options that reach pbguest in a
// real guest on the stock kernel: a shared donor with eviction and
// fdatasync, then the e4defrag tool, and checks each reached the guest and
// came back in the record.
func TestWorkloadOptionsEndToEnd(t *testing.T) {
	e := newFaultEnv(t)
	control, err := LoadCase("../cases/ext4-defrag-control")
	if err != nil {
		t.Fatal(err)
	}
	control.Workload.Duration = casespec.Duration(6 * time.Second)
	control.Workload.FdatasyncEvery = 16
	control.Workload.Defrag.Donor = "shared"
	control.Workload.Defrag.EvictOneIn = 4
	control.Workload.Epochs = 2
	e.c = control
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	rec, err := e.runner(t).RunOne(ctx, "stock", 0, 3, e.k)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Outcome != record.Pass {
		t.Errorf("shared donor run: %s %v", rec.Outcome, rec.Reasons)
	}
	if len(rec.Defrag) != 1 || rec.Defrag[0].Donor != "shared" || rec.Defrag[0].Evictions == 0 || rec.Defrag[0].MovesPerS <= 0 {
		t.Errorf("defrag %+v: want the shared donor, evictions and a move rate", rec.Defrag)
	}
	if rec.FilesMoved() != int64(control.Workload.Files) {
		t.Errorf("files moved %d of %d over 2 epochs", rec.FilesMoved(), control.Workload.Files)
	}
	for _, w := range rec.Writers {
		if w.WritesPerS <= 0 || (w.Mode == "mmap" && w.FaultsPerS <= 0) {
			t.Errorf("writer %+v: want writes/s, and faults/s for mmap", w)
		}
	}

	control.Workload.Defrag.Donor, control.Workload.Defrag.EvictOneIn, control.Workload.Epochs = "", 0, 0
	control.Workload.Defrag.Tool = casespec.DefragE4defrag
	control.Variants["stock"] = casespec.Variant{Expect: casespec.Expectation{MaxBadBlocks: intp(0), FsckClean: true, NoFindings: true}}
	rec, err = e.runner(t).RunOne(ctx, "stock", 0, 3, e.k)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Outcome != record.Pass {
		t.Errorf("e4defrag run: %s %v", rec.Outcome, rec.Reasons)
	}
	if len(rec.Defrag) != 1 || rec.Defrag[0].Tool != casespec.DefragE4defrag || rec.Defrag[0].Attempts == 0 {
		t.Fatalf("defrag %+v: want e4defrag invocations", rec.Defrag)
	}
	var classes int64
	for _, n := range rec.Defrag[0].Results {
		classes += n
	}
	if classes != rec.Defrag[0].Attempts {
		t.Errorf("e4defrag classes add up to %d, attempts %d", classes, rec.Defrag[0].Attempts)
	}
	t.Logf("e4defrag: %d invocations, %v", rec.Defrag[0].Attempts, rec.Defrag[0].Results)
}
