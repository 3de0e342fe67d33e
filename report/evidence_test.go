package report

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"patchbay/casespec"
	"patchbay/record"
	"patchbay/seqtest"
	"patchbay/triage"
)

// decideSample is a decide session as harness records it: six rounds of
// eopnotsupp (all pass) and fallback (5 of 6 fail, one title in every
// run), per-second series from the guest on every run, and the decision
// the real rule (seqtest.Default) makes on those rounds.
func decideSample(t *testing.T) *record.Summary {
	t.Helper()
	start := time.Date(2026, 12, 4, 4, 30, 0, 0, time.UTC)
	bug := triage.Finding{Kind: triage.KindWarning, Title: "WARNING in ext4_move_extents", Line: 700, Phase: "workload", Report: "WARNING: CPU: 1 PID: 97 at fs/ext4/move_extent.c:640"}
	series := func(idx int, bad bool) (*record.PerSecond, *record.PerSecond) {
		w := &record.PerSecond{StartUnix: 1.7e9, Counts: map[string][]int64{}}
		d := &record.PerSecond{StartUnix: 1.7e9 + 1, Counts: map[string][]int64{}}
		for s := range 20 {
			w.Counts["writes"] = append(w.Counts["writes"], int64(200+10*((s+idx)%5)))
			d.Counts["moved"] = append(d.Counts["moved"], int64(3+s%4))
			d.Counts["transitions"] = append(d.Counts["transitions"], int64(3+s%4))
			d.Counts["refused"] = append(d.Counts["refused"], int64(s%3))
		}
		if bad {
			w.Counts["readback_bad"] = make([]int64, 14)
			w.Counts["readback_bad"][7+idx%5] = 2
		}
		return w, d
	}
	mk := func(variant string, idx int, fail bool) *record.RunRecord {
		o := record.Pass
		var reasons []string
		var findings []triage.Finding
		if fail {
			o, reasons, findings = record.Crash, []string{"WARNING in ext4_move_extents"}, []triage.Finding{bug}
		}
		w, d := series(idx, fail)
		return &record.RunRecord{
			Case: "ext4-journal-defrag", Variant: variant, Index: idx, Seed: 7000 + uint64(idx), Release: "6.12.118",
			Accel: "tcg", Started: start.Add(time.Duration(idx) * time.Minute), Seconds: 33, BootSecs: 6, Outcome: o, Reasons: reasons,
			Dir:      fmt.Sprintf("%s/%d", variant, idx),
			Writers:  []record.WriterResult{{ID: 0, Mode: "mmap", Writes: 4000, PerSecond: w}},
			Defrag:   []record.DefragResult{{Results: map[string]int64{"moved": 90}, Transitions: 90, PerSecond: d}},
			Verify:   []record.VerifyResult{{Phase: "live"}, {Phase: "dropcache"}, {Phase: "remount"}},
			Fsck:     &record.FsckResult{Clean: true},
			Findings: findings,
		}
	}
	fails := []bool{true, true, false, true, true, true}
	var eop, fall []*record.RunRecord
	var pairs []seqtest.Pair
	for i, f := range fails {
		eop = append(eop, mk("eopnotsupp", i, false))
		// Every run of fallback shows the title; run 2 passes the
		// expectations only in this sample's telling.
		r := mk("fallback", i, f)
		if !f {
			r.Findings = []triage.Finding{bug}
		}
		fall = append(fall, r)
		pairs = append(pairs, seqtest.Pair{Variant: f})
	}
	design := seqtest.Default()
	bounds, err := design.Bounds()
	if err != nil {
		t.Fatal(err)
	}
	res := design.Decide(bounds, pairs, false)
	if res.Decision != seqtest.Worse || res.DecidedAt != 6 {
		t.Fatalf("sample's decision: %s at %d", res.Decision, res.DecidedAt)
	}
	return &record.Summary{
		Case: "ext4-journal-defrag", Question: "Does the fallback lose data where refusing is safe?", Baseline: "eopnotsupp",
		Started: start, Seconds: 420, Seed: 7000, Accel: "tcg",
		Workload: casespec.WorkloadSpec{Duration: casespec.Duration(20 * time.Second), Files: 4, Blocks: 256, MmapWriters: 2, PwriteWriters: 1},
		Variants: []record.VariantSummary{
			{Name: "eopnotsupp", Runs: eop},
			{Name: "fallback", Patches: []string{"0001.patch"}, Runs: fall},
		},
		Decide: &record.DecideRecord{Rule: record.DecideRule, Design: design, Bounds: bounds, BudgetSeconds: 840, Rounds: 6, Ended: "every variant decided",
			Variants: []record.VariantDecision{{Name: "fallback", Result: res}}},
	}
}

// TestEvidenceReports: the decision, the new-in-every-run line and the
// detection reach summary.md, and report.html draws the rates, the
// decision path and a timeline per run as inline SVG.
func TestEvidenceReports(t *testing.T) {
	s := decideSample(t)
	md := Markdown(s)
	for _, want := range []string{
		"## Decision",
		"**fallback vs eopnotsupp: differs-worse** after 6 rounds (variant failed 5, baseline 0)",
		"looks (variant-only/discordant ≥ boundary, one per round): 1/1≥- 2/2≥- 2/2≥- 3/3≥- 4/4≥- 5/5≥5",
		"new: WARNING in ext4_move_extents in 6 of 6 runs, never in 6 baseline runs",
		"fallback 83% per run",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("summary.md lacks %q:\n%s", want, md)
		}
	}
	data, err := HTML(s, "")
	if err != nil {
		t.Fatal(err)
	}
	page := string(data)
	if n := strings.Count(page, `<svg class="plot"`); n != 2 {
		t.Errorf("%d plots, want the rates and one decision path", n)
	}
	if n := strings.Count(page, `<svg class="timeline"`); n != 12 {
		t.Errorf("%d timelines, want one per run (12)", n)
	}
	for _, want := range []string{"differs-worse", "stale read-backs", "a_ops transitions/s", "<polyline", "5/6"} {
		if !strings.Contains(page, want) {
			t.Errorf("report.html lacks %q", want)
		}
	}
	if strings.Contains(page, "<script") {
		t.Error("report.html has a script")
	}
}
