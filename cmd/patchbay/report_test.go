package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"patchbay/kernel"
	"patchbay/record"
	"patchbay/report"
)

func TestReportCommandRerenders(t *testing.T) {
	dir := t.TempDir()
	sum := &record.Summary{
		Case: "ext4-journal-defrag", Baseline: "eopnotsupp", Seed: 1, Accel: "tcg",
		Started: time.Date(2026, 11, 28, 10, 38, 3, 0, time.UTC),
		Variants: []record.VariantSummary{
			{Name: "eopnotsupp", Kernel: &kernel.Artifact{Key: "183cbe68b9b24e6a", Release: "6.12.117"},
				Runs: []*record.RunRecord{{Variant: "eopnotsupp", Outcome: record.Pass, Dir: "eopnotsupp/0", Seed: 1}}},
			{Name: "fallback", Kernel: &kernel.Artifact{Key: "e1634d79638a80bc", Release: "6.12.117"},
				Runs: []*record.RunRecord{{Variant: "fallback", Outcome: record.Crash, Dir: "fallback/0", Seed: 1,
					Reasons: []string{"WARNING in ext4_move_extents"}}}},
		},
	}
	if err := report.Write(dir, sum); err != nil {
		t.Fatal(err)
	}
	// Stale or missing reports must come back from summary.json alone.
	for _, name := range []string{"report.html", "junit.xml", "kcidb.json"} {
		if err := os.Remove(filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "summary.md"), []byte("stale"), 0o644); err != nil {
		t.Fatal(err)
	}

	var out bytes.Buffer
	cmd := newReportCommand()
	cmd.SetArgs([]string{dir})
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	if err := cmd.Execute(); err != nil {
		t.Fatalf("patchbay report: %v\n%s", err, out.String())
	}
	for _, want := range []string{"# patchbay: ext4-journal-defrag", "| outcome | pass 1 | crash 1 |", "- fallback #0 (seed 1) crash: WARNING in ext4_move_extents"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	md, err := os.ReadFile(filepath.Join(dir, "summary.md"))
	if err != nil {
		t.Fatal(err)
	}
	if string(md) != out.String() {
		t.Errorf("summary.md differs from the printed Markdown:\n%s", md)
	}
	for _, name := range []string{"summary.json", "report.html", "junit.xml", "kcidb.json"} {
		if st, err := os.Stat(filepath.Join(dir, name)); err != nil || st.Size() == 0 {
			t.Errorf("%s not re-rendered: %v", name, err)
		}
	}
	html, _ := os.ReadFile(filepath.Join(dir, "report.html"))
	if !strings.Contains(string(html), `href="fallback/0/console.log"`) {
		t.Error("report.html does not link the run's console log")
	}
}

func TestReportCommandErrors(t *testing.T) {
	for name, setup := range map[string]func(dir string) error{
		"missing": func(string) error { return nil },
		"garbage": func(dir string) error { return os.WriteFile(filepath.Join(dir, "summary.json"), []byte("{"), 0o644) },
		"not ours": func(dir string) error {
			return os.WriteFile(filepath.Join(dir, "summary.json"), []byte(`{"variants": []}`), 0o644)
		},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if err := setup(dir); err != nil {
				t.Fatal(err)
			}
			cmd := newReportCommand()
			cmd.SetArgs([]string{dir})
			cmd.SetOut(&bytes.Buffer{})
			cmd.SetErr(&bytes.Buffer{})
			cmd.SilenceUsage = true
			err := cmd.Execute()
			if err == nil || !strings.Contains(err.Error(), "summary.json") {
				t.Errorf("want an error naming summary.json, got %v", err)
			}
		})
	}
}
