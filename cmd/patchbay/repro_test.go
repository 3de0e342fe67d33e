package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"patchbay/record"
)

func TestLoadRepro(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "results", "ext4-journal-defrag", "20261128-100000")
	writeSession(t, dir, "", sessionPlan(t))
	run := filepath.Join(dir, "fallback", "2")

	c, rec, err := loadRepro(run, "../../cases/ext4-journal-defrag", nil)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Variant != "fallback" || rec.Index != 2 || rec.Seed != 9 || rec.Kernel != "key-fallback" || rec.Outcome != record.Fail {
		t.Errorf("record %+v", rec)
	}
	// The workload as it ran (5 s, from summary.json), not the case's 20 s.
	if c.Name != "ext4-journal-defrag" || c.Workload.Duration.D() != 5*time.Second || c.Workload.PwriteWriters != 0 {
		t.Errorf("case %s, workload %+v", c.Name, c.Workload)
	}

	for name, tc := range map[string]struct {
		run, casePath, want string
	}{
		"not a run":      {dir, "../../cases/ext4-journal-defrag", "is not a run folder"},
		"case not found": {run, "", "not found: pass --case"},
		"other case":     {run, "../../cases/ext4-defrag-control", `is case "ext4-defrag-control" but the run is of case "ext4-journal-defrag"`},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := loadRepro(tc.run, tc.casePath, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
	// A run folder whose results directory lost its summary.
	os.Remove(filepath.Join(dir, "summary.json"))
	if _, _, err := loadRepro(run, "../../cases/ext4-journal-defrag", nil); err == nil || !strings.Contains(err.Error(), "summary.json") {
		t.Errorf("err = %v, want one naming summary.json", err)
	}
	if _, err := runCLI(t, "repro", run, "--case", "../../cases/ext4-journal-defrag"); err == nil || exitCode(err) != 2 {
		t.Errorf("repro without summary.json: %v", err)
	}
}

// repro's help says what a seed pins and what it does not.
func TestReproSaysSeedPinsWorkloadNotInterleaving(t *testing.T) {
	long := newReproCommand().Long
	for _, want := range []string{"a seed pins the workload", "not the interleaving"} {
		if !strings.Contains(long, want) {
			t.Errorf("repro help lacks %q:\n%s", want, long)
		}
	}
}
