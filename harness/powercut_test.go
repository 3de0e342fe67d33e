package harness

import (
	"strings"
	"testing"
	"time"

	"patchbay/casespec"
	"patchbay/record"
	"patchbay/workload/guestcmd"
)

const powerCutCase = `name: t
kernel:
  source: debian:linux-source-6.12
workload:
  duration: 25s
  mmap_writers: 1
  pwrite_writers: 1
  msync_every: 8
  fsync_every: 8
  power_cut:
    after: 5s..15s
variants:
  a:
    patches: [fix.patch]
    expect: {max_bad_blocks: 0}
`

func TestPowerCutCaseErrors(t *testing.T) {
	c, err := LoadCase(writeCase(t, powerCutCase))
	if err != nil {
		t.Fatalf("good case: %v", err)
	}
	if pc := c.Workload.PowerCut; pc == nil || !windowIs(pc, 5*time.Second, 15*time.Second) {
		t.Fatalf("power_cut = %+v, want 5s..15s", pc)
	}
	tests := []struct {
		name, from, to string
		want           []string
	}{
		{"not a range", "after: 5s..15s", "after: soon", []string{"case.yaml:11: workload.power_cut.after", `"soon"`}},
		{"reversed", "after: 5s..15s", "after: 15s..5s", []string{"workload.power_cut.after", "start <= end"}},
		{"missing", "after: 5s..15s", "after: ''", []string{"workload.power_cut.after", "missing"}},
		{"too short", "duration: 25s", "duration: 16s", []string{"case.yaml:5: workload.duration", "at least 20s"}},
		{"no syncs", "  msync_every: 8\n  fsync_every: 8\n", "", []string{"workload.power_cut", "nothing is acknowledged"}},
		{"moves expected", "{max_bad_blocks: 0}", "{min_moved: 1}", []string{"variants.a.expect", "not counted"}},
		{"fio", "  duration: 25s", "  kind: fio\n  fio: {job: x.fio}\n  duration: 25s", []string{"workload.power_cut", "patchbay workload"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			y := strings.Replace(powerCutCase, tt.from, tt.to, 1)
			if y == powerCutCase {
				t.Fatal("test did not change the case")
			}
			_, err := LoadCase(writeCase(t, y))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// windowIs says whether pc's parsed window is lo..hi.
func windowIs(pc *casespec.PowerCutSpec, lo, hi time.Duration) bool {
	l, h := pc.Window()
	return l == lo && h == hi
}

func TestShippedPowerCutCasesLoad(t *testing.T) {
	for _, p := range []string{"../cases/ext4-journal-defrag/power-cut.yaml", "testdata/seeded-bugs/power-cut.yaml"} {
		c, err := LoadCase(p)
		if err != nil {
			t.Fatal(err)
		}
		if c.Workload.PowerCut == nil || len(c.Variants) < 2 {
			t.Errorf("%s: power_cut %+v, %d variants", p, c.Workload.PowerCut, len(c.Variants))
		}
	}
}

// TestJudgeReplayReason: after a power cut a block later than acknowledged
// is fine, so the reason lists only what is bad.
func TestJudgeReplayReason(t *testing.T) {
	zero := 0
	rec := &record.RunRecord{Verify: []record.VerifyResult{{Phase: guestcmd.ReplayPhase, BadTotal: 2, Counts: map[string]int64{"ok": 10, "future": 5, "stale": 2}}},
		Fsck: &record.FsckResult{Clean: true}}
	Judge(rec, RunStatus{}, casespec.Expectation{MaxBadBlocks: &zero, FsckClean: true})
	reasons := strings.Join(rec.Reasons, "; ")
	if rec.Outcome != record.Fail || !strings.Contains(reasons, "stale:2") || strings.Contains(reasons, "future") {
		t.Errorf("%s: %s", rec.Outcome, reasons)
	}
}
