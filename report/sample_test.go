package report

import (
	"fmt"
	"time"

	"patchbay/casespec"
	"patchbay/kernel"
	"patchbay/record"
	"patchbay/triage"
)

// Titles used by richSample; nasty is there to prove escaping.
const (
	warnTitle  = "WARNING in ext4_move_extents"
	ext4Warn   = "EXT4-fs warning: ext4_move_extents: moving a journaled inode"
	hungTitle  = "INFO: task hung in jbd2_journal_commit_transaction"
	nastyTitle = `BUG: KASAN: slab-out-of-bounds in ext4_<mext>&"x"`
)

// richSample has every outcome: a baseline with three runs, a variant with
// one run of each other outcome and a variant whose kernel did not build.
func richSample() *record.Summary {
	start := time.Date(2026, 11, 28, 10, 38, 3, 0, time.UTC)
	n := 0
	mk := func(variant string, idx int, o record.Outcome, reasons []string, findings ...triage.Finding) *record.RunRecord {
		n++
		return &record.RunRecord{
			Case: "ext4-journal-defrag", Variant: variant, Index: idx, Seed: 100 + uint64(idx),
			Release: "6.12.117", Accel: "tcg", Started: start.Add(time.Duration(n) * time.Minute),
			Seconds: 20 + float64(idx), BootSecs: 7, Outcome: o, Reasons: reasons,
			Dir:      fmt.Sprintf("%s/%d", variant, idx),
			Writers:  []record.WriterResult{{ID: 0, Mode: "mmap", Writes: 1000}, {ID: 1, Mode: "pwrite", Writes: 3000}},
			Defrag:   []record.DefragResult{{Results: map[string]int64{"moved": 10, "EBUSY": 1}, Transitions: 5}},
			Verify:   []record.VerifyResult{{Phase: "live"}, {Phase: "dropcache"}, {Phase: "remount"}},
			Fsck:     &record.FsckResult{Clean: true},
			Findings: findings,
		}
	}
	warn := triage.Finding{Kind: triage.KindWarning, Title: warnTitle, Line: 812,
		Report: "------------[ cut here ]------------\nWARNING: CPU: 1 PID: 97 at fs/ext4/move_extent.c:640 ext4_move_extents+0x3e/0x9a0\nCall Trace:\n <TASK>\n ext4_ioctl+0x1d2/0x1f0\n"}
	ext4w := triage.Finding{Kind: triage.KindExt4Warning, Title: ext4Warn, Line: 700, Report: "EXT4-fs warning (device vdb): ext4_move_extents:123: moving a journaled inode"}
	hung := triage.Finding{Kind: triage.KindHungTask, Title: hungTitle, Line: 990, Report: "INFO: task jbd2/vdb-8:55 blocked for more than 30 seconds."}
	nasty := triage.Finding{Kind: triage.KindKASAN, Title: nastyTitle, Line: 1200, Report: "BUG: KASAN: slab-out-of-bounds in ext4_<mext>&\"x\"\nRead of size 8 at addr <ffff8880>"}

	base := &kernel.Artifact{Key: "183cbe68b9b24e6aec3d4b47", Release: "6.12.117", Compiler: "gcc (Debian 12.2.0-14+deb12u1) 12.2.0", BuildSecs: 44.2, Source: "debian:linux-source-6.12=6.12.117-1~deb12u1"}
	fb := *base
	fb.Key = "e1634d79638a80bc28bf49d1"
	fb.BuildSecs = 28.9

	eop := []*record.RunRecord{
		mk("eopnotsupp", 0, record.Pass, nil),
		mk("eopnotsupp", 1, record.Pass, nil),
		mk("eopnotsupp", 2, record.Pass, nil, ext4w),
	}
	for _, r := range eop {
		r.Defrag[0].Results = map[string]int64{"EOPNOTSUPP": 1000}
		r.Defrag[0].Transitions = 0
	}
	fall := []*record.RunRecord{
		mk("fallback", 0, record.Crash, []string{warnTitle}, warn, ext4w),
		mk("fallback", 1, record.Fail, []string{"bad blocks = 4, expected at most 0", "verify dropcache: 4 bad blocks map[stale:4]"}),
		mk("fallback", 2, record.Hang, []string{hungTitle}, hung),
		mk("fallback", 3, record.Pass, nil),
		mk("fallback", 4, record.InfraError, []string{"qemu: could not allocate 1024 MiB"}),
		mk("fallback", 5, record.Interrupted, []string{"interrupted by the user"}),
		mk("fallback", 6, record.BootError, []string{"no SSH within 3m0s", nastyTitle}, nasty),
	}
	fall[1].Verify[1].BadTotal = 4
	fall[1].Fsck = &record.FsckResult{Exit: 4}
	fall[6].Fsck = nil
	fall[6].Defrag, fall[6].Verify, fall[6].Writers = nil, nil, nil

	s := &record.Summary{
		Case: "ext4-journal-defrag", Question: "Does the fallback lose data where refusing is safe?",
		CaseFile: "cases/ext4-journal-defrag/case.yaml", Baseline: "eopnotsupp",
		Started: start, Seconds: 600, Seed: 100, Accel: "tcg", AccelNote: "no KVM", Image: "4ee46d50c19375b9966c",
		Workload: casespec.WorkloadSpec{Duration: casespec.Duration(20 * time.Second), Files: 4, Blocks: 256, MmapWriters: 2, PwriteWriters: 1},
		Variants: []record.VariantSummary{
			{Name: "eopnotsupp", Description: "stock: refuse", Kernel: base, Runs: eop},
			{Name: "fallback", Description: "swap a_ops", Patches: []string{"0001-fallback.patch"}, Kernel: &fb, Runs: fall},
			{Name: "broken", Description: "does not apply", Patches: []string{"0001-broken.patch"}, BuildError: "patch 0001-broken.patch: hunk #1 FAILED at 640 <move_extent.c>"},
		},
	}
	s.Workload.Defrag.Workers = 1
	return s
}
