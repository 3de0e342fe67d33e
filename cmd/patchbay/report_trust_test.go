package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"patchbay/kernel"
	"patchbay/record"
)

func runReport(t *testing.T, dir string) string {
	t.Helper()
	var out bytes.Buffer
	cmd := newReportCommand()
	cmd.SetArgs([]string{dir})
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	if err := cmd.Execute(); err != nil {
		t.Fatalf("patchbay report: %v\n%s", err, out.String())
	}
	return out.String()
}

// A directory as a session killed (kill -9) after two of its four runs
// leaves it: summary.json as the session rewrote it after the second run
// (plain record.Summary, no stats), the two run folders, no reports.
func TestReportRendersAKilledSession(t *testing.T) {
	dir := t.TempDir()
	k := &kernel.Artifact{Key: "183cbe68b9b24e6a", Release: "6.12.117"}
	sum := record.Summary{
		Case: "ext4-journal-defrag", Baseline: "base", Seed: 7, Accel: "tcg", PlannedRuns: 2,
		Started: time.Date(2026, 12, 4, 4, 0, 0, 0, time.UTC),
		Variants: []record.VariantSummary{
			{Name: "base", Kernel: k, Runs: []*record.RunRecord{{Variant: "base", Index: 0, Seed: 7, Outcome: record.Pass, Dir: "base/0"}}},
			{Name: "fix", Kernel: k, Runs: []*record.RunRecord{{Variant: "fix", Index: 0, Seed: 7, Outcome: record.Crash, Dir: "fix/0", Reasons: []string{"BUG in ext4_move_extents"}}}},
		},
		NotFinished: []record.Job{{Variant: "base", Index: 1, Seed: 8}, {Variant: "fix", Index: 1, Seed: 8}},
	}
	data, err := json.MarshalIndent(&sum, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"base/0", "fix/0", "base/1"} { // base/1 had started
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "summary.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	out := runReport(t, dir)
	for _, want := range []string{
		"| outcome | pass 1 | crash 1 |",
		"| not finished | #1 (seed 8) | #1 (seed 8) |",
		"- base #1 (seed 8): not finished",
		"- fix #1 (seed 8): not finished",
		"- fix #0 (seed 7) crash: BUG in ext4_move_extents",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("summary.md lacks %q:\n%s", want, out)
		}
	}
	html, err := os.ReadFile(filepath.Join(dir, "report.html"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(html), "<th>not finished</th><td>#1 (seed 8)</td>") {
		t.Errorf("report.html does not name the unfinished runs")
	}
}

// report keeps summary.json as it is, fields it does not know included,
// at the top level and inside a run.
func TestReportKeepsUnknownFields(t *testing.T) {
	dir := t.TempDir()
	in := `{
  "schema": 1,
  "case": "c",
  "baseline": "base",
  "from_a_newer_patchbay": {"x": [1, 2]},
  "variants": [
    {"name": "base", "runs": [{"variant": "base", "index": 0, "outcome": "pass", "dir": "base/0", "gpu_temperature": 41}]}
  ]
}
`
	path := filepath.Join(dir, "summary.json")
	if err := os.WriteFile(path, []byte(in), 0o644); err != nil {
		t.Fatal(err)
	}
	runReport(t, dir)
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != in {
		t.Errorf("summary.json changed:\n%s", got)
	}
	var m map[string]any
	if err := json.Unmarshal(got, &m); err != nil || m["from_a_newer_patchbay"] == nil ||
		!strings.Contains(string(got), `"gpu_temperature": 41`) {
		t.Errorf("unknown fields lost (%v)", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "summary.md")); err != nil {
		t.Errorf("summary.md not rendered: %v", err)
	}
}
