package report

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"patchbay/harness"
	"patchbay/kernel"
	"patchbay/triage"
)

func sample() *harness.Summary {
	mk := func(variant string, outcome harness.Outcome, moved, refused, bad int64, findings ...triage.Finding) *harness.RunRecord {
		return &harness.RunRecord{
			Variant: variant, Outcome: outcome, Dir: variant + "/0", Seed: 7,
			Writers: []harness.WriterResult{{ID: 0, Mode: "mmap", Writes: 100}},
			Defrag:  []harness.DefragResult{{Results: map[string]int64{"moved": moved, "EOPNOTSUPP": refused, "EBUSY": 1}, Transitions: moved}},
			Verify: []harness.VerifyResult{
				{Phase: "live"}, {Phase: "dropcache", BadTotal: bad}, {Phase: "remount", BadTotal: bad},
			},
			Fsck:     &harness.FsckResult{Clean: bad == 0, Exit: map[bool]int{true: 0, false: 4}[bad == 0]},
			Findings: findings,
			Reasons:  map[bool][]string{true: nil, false: {"bad blocks = 4, expected at most 0"}}[outcome == harness.Pass],
		}
	}
	warn := triage.Finding{Kind: "WARNING", Title: "WARNING in ext4_move_extents"}
	return &harness.Summary{
		Case: "ext4-journal-defrag", Baseline: "eopnotsupp", Seed: 7, Accel: "tcg",
		Variants: []harness.VariantSummary{
			{Name: "eopnotsupp", Kernel: &kernel.Artifact{Key: "183cbe68b9b24e6a", Release: "6.12.117"},
				Runs: []*harness.RunRecord{mk("eopnotsupp", harness.Pass, 0, 50, 0)}},
			{Name: "fallback", Patches: []string{"0001.patch"}, Kernel: &kernel.Artifact{Key: "e1634d79638a80bc", Release: "6.12.117"},
				Runs: []*harness.RunRecord{mk("fallback", harness.Fail, 29, 0, 2, warn), mk("fallback", harness.Pass, 10, 0, 0)}},
		},
	}
}

func TestMarkdownSideBySide(t *testing.T) {
	md := Markdown(sample())
	for _, want := range []string{
		"| | eopnotsupp (baseline) | fallback |",
		"| outcome | pass 1 | pass 1, fail 1 |",
		"| moves done | 0 | 39 |",
		"| refused EOPNOTSUPP | 50 | 0 |",
		"| other move errors | 1 | 2 |",
		"| bad blocks live/dropcache/remount | 0/0/0 | 0/2/2 |",
		"| e2fsck | clean 1 | clean 1, ERRORS 1 |",
		"WARNING in ext4_move_extents (1/2 runs)",
		"- fallback #0 (seed 7) fail: bad blocks = 4",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("summary.md lacks %q:\n%s", want, md)
		}
	}
}

func TestWriteIsCompleteJSON(t *testing.T) {
	dir := t.TempDir()
	if err := Write(dir, sample()); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "summary.json"))
	if err != nil {
		t.Fatal(err)
	}
	var back harness.Summary
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Variants) != 2 || back.Variants[1].Runs[0].Moved() != 29 || back.Variants[1].Kernel.Key != "e1634d79638a80bc" {
		t.Errorf("summary.json did not round-trip: %+v", back.Variants)
	}
	if _, err := os.Stat(filepath.Join(dir, "summary.md")); err != nil {
		t.Error(err)
	}
	if leftovers, _ := filepath.Glob(filepath.Join(dir, "*.tmp")); len(leftovers) > 0 {
		t.Errorf("temporary files left: %v", leftovers)
	}
}
