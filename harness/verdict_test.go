package harness

import (
	"slices"
	"strings"
	"testing"

	"patchbay/casespec"
	"patchbay/record"
	"patchbay/triage"
)

func intp(n int) *int { return &n }

// stockRun is a run that meets the eopnotsupp expectations.
func stockRun() *record.RunRecord {
	return &record.RunRecord{
		Writers: []record.WriterResult{{ID: 0, Mode: "mmap", Writes: 100}},
		Defrag:  []record.DefragResult{{Attempts: 50, Results: map[string]int64{"EOPNOTSUPP": 50}}},
		Verify: []record.VerifyResult{
			{Phase: "live", Counts: map[string]int64{"ok": 1024}},
			{Phase: "dropcache", Counts: map[string]int64{"ok": 1024}},
			{Phase: "remount", Counts: map[string]int64{"ok": 1024}},
		},
		Fsck: &record.FsckResult{Exit: 0, Clean: true},
	}
}

var stockExpect = casespec.Expectation{
	MaxMoved: intp(0), MinRefusedEOPNOTSUPP: intp(1), MaxBadBlocks: intp(0), FsckClean: true, NoFindings: true,
}

func TestJudge(t *testing.T) {
	warn := triage.Finding{Kind: "WARNING", Title: "WARNING in ext4_move_extents"}
	hung := triage.Finding{Kind: "hung-task", Title: "INFO: task hung in jbd2_journal_commit_transaction"}
	ext4err := triage.Finding{Kind: "ext4-error", Title: "EXT4-fs error in ext4_find_extent"}
	tests := []struct {
		name    string
		mutate  func(*record.RunRecord)
		st      RunStatus
		want    record.Outcome
		because string
	}{
		{"all good", nil, RunStatus{}, record.Pass, ""},
		{"moves on stock", func(r *record.RunRecord) { r.Defrag[0].Results["moved"] = 3 }, RunStatus{}, record.Fail, "moves = 3, expected at most 0"},
		{"no refusals", func(r *record.RunRecord) { r.Defrag[0].Results = map[string]int64{} }, RunStatus{}, record.Fail, "EOPNOTSUPP refusals = 0"},
		{"bad block after drop_caches", func(r *record.RunRecord) { r.Verify[1].BadTotal = 2; r.Verify[1].Counts["stale"] = 2 }, RunStatus{}, record.Fail, "verify dropcache: 2 bad blocks"},
		{"fsck dirty", func(r *record.RunRecord) { r.Fsck = &record.FsckResult{Exit: 4} }, RunStatus{}, record.Fail, "e2fsck -fn exit 4"},
		{"fsck missing", func(r *record.RunRecord) { r.Fsck = nil }, RunStatus{}, record.Fail, "e2fsck did not run"},
		{"writer error", func(r *record.RunRecord) { r.Writers[0].Errors = []string{"SIGBUS at f001 block 3"} }, RunStatus{}, record.Fail, "SIGBUS"},
		{"lost write seen by a read-back", func(r *record.RunRecord) {
			r.Writers[0].Readbacks, r.Writers[0].ReadbackBad = 40, 1
			r.Writers[0].BadReads = []string{"f002 block 17 after 812 writes: stale, expected gen 9, found file 2 block 17 writer 0 gen 8"}
		}, RunStatus{}, record.Fail, "1 of 40 read-backs did not return the last write: first f002 block 17"},
		{"ext4 error is a fail", func(r *record.RunRecord) { r.Findings = []triage.Finding{ext4err} }, RunStatus{}, record.Fail, "EXT4-fs error"},
		{"warning is a crash", func(r *record.RunRecord) { r.Findings = []triage.Finding{warn} }, RunStatus{}, record.Crash, "WARNING in ext4_move_extents"},
		{"crash beats broken expectations", func(r *record.RunRecord) { r.Findings = []triage.Finding{warn}; r.Fsck = nil }, RunStatus{}, record.Crash, ""},
		{"hung task", func(r *record.RunRecord) { r.Findings = []triage.Finding{hung} }, RunStatus{}, record.Hang, "INFO: task hung"},
		{"deadline with VM alive", nil, RunStatus{Timeout: "workload overran"}, record.Hang, "overran"},
		{"crash beats timeout", func(r *record.RunRecord) { r.Findings = []triage.Finding{warn} }, RunStatus{Timeout: "x"}, record.Crash, ""},
		{"no ssh", nil, RunStatus{Boot: "no SSH login before the deadline"}, record.BootError, "no SSH"},
		{"panic while booting is a boot error", func(r *record.RunRecord) {
			r.Findings = []triage.Finding{{Kind: "panic", Title: "kernel panic: VFS: Unable to mount root fs on unknown-block"}}
		}, RunStatus{Boot: "kernel panicked during boot", Panicked: true}, record.BootError, "Unable to mount root fs"},
		{"pvpanic without a recognized report", nil, RunStatus{Panicked: true}, record.Crash, "pvpanic"},
		{"guest reset mid-run", nil, RunStatus{Rebooted: true}, record.Crash, "unexpected reboot"},
		{"pvpanic with a report names it", func(r *record.RunRecord) { r.Findings = []triage.Finding{warn} }, RunStatus{Panicked: true}, record.Crash, "WARNING in ext4_move_extents"},
		{"qemu missing", nil, RunStatus{Infra: "qemu-system-x86_64 not found"}, record.InfraError, "not found"},
		{"infra beats findings", func(r *record.RunRecord) { r.Findings = []triage.Finding{warn} }, RunStatus{Infra: "disk full"}, record.InfraError, ""},
		{"vm died without a splat", nil, RunStatus{VMDied: "QEMU exited mid-run"}, record.InfraError, "mid-run"},
		{"interrupted", nil, RunStatus{Interrupted: true, Timeout: "x"}, record.Interrupted, ""},
		{"setup did not take", nil, RunStatus{Setup: "data journaling set on 0 of 4 files"}, record.Fail, "setup: data journaling"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := stockRun()
			if tt.mutate != nil {
				tt.mutate(r)
			}
			Judge(r, tt.st, stockExpect)
			if r.Outcome != tt.want {
				t.Fatalf("outcome %s (%v), want %s", r.Outcome, r.Reasons, tt.want)
			}
			if tt.because != "" && !strings.Contains(strings.Join(r.Reasons, "\n"), tt.because) {
				t.Errorf("reasons %q lack %q", r.Reasons, tt.because)
			}
		})
	}
}

func TestJudgeFallbackNeedsTransitions(t *testing.T) {
	r := stockRun()
	r.Defrag[0].Results = map[string]int64{"moved": 10}
	exp := casespec.Expectation{MinMoved: intp(1), MinTransitions: intp(1), MaxBadBlocks: intp(0)}
	Judge(r, RunStatus{}, exp)
	if r.Outcome != record.Fail || !strings.Contains(strings.Join(r.Reasons, ";"), "a_ops transitions = 0") {
		t.Fatalf("moves without transitions: %s %v; the hazard was not exercised, so not a pass", r.Outcome, r.Reasons)
	}
	r.Defrag[0].Transitions = 4
	Judge(r, RunStatus{}, exp)
	if r.Outcome != record.Pass {
		t.Fatalf("outcome %s %v", r.Outcome, r.Reasons)
	}
}

// The iomap case's stand-in for transitions: files moved, the most any one
// worker moved (two workers on the same files do not add up).
func TestJudgeFilesMoved(t *testing.T) {
	r := stockRun()
	r.Defrag = []record.DefragResult{{Results: map[string]int64{"moved": 3}, FilesMoved: 2}, {Results: map[string]int64{"moved": 1}, FilesMoved: 1}}
	exp := casespec.Expectation{MinFilesMoved: intp(3)}
	Judge(r, RunStatus{}, exp)
	if r.Outcome != record.Fail || !strings.Contains(strings.Join(r.Reasons, ";"), "work files moved = 2, expected at least 3") {
		t.Fatalf("outcome %s %v", r.Outcome, r.Reasons)
	}
	exp.MinFilesMoved = intp(2)
	Judge(r, RunStatus{}, exp)
	if r.Outcome != record.Pass {
		t.Fatalf("outcome %s %v", r.Outcome, r.Reasons)
	}
}

// A pass on order-0 folios only is marked: the verdict carries the reason.
func TestJudgeMarksOrderZeroOnlyPass(t *testing.T) {
	r := stockRun()
	r.BufferedIomap = &record.IomapActivity{Setup: 10, Folios: 400}
	Judge(r, RunStatus{}, casespec.Expectation{})
	if r.Outcome != record.Pass || !slices.Contains(r.Reasons, OrderZeroOnly) {
		t.Fatalf("order 0 only: outcome %s %v", r.Outcome, r.Reasons)
	}
	r.BufferedIomap.LargeFolios = 12
	Judge(r, RunStatus{}, casespec.Expectation{})
	if r.Outcome != record.Pass || len(r.Reasons) != 0 {
		t.Fatalf("with large folios: outcome %s %v", r.Outcome, r.Reasons)
	}
}
