package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"patchbay/report"
)

// reproducer and minimize from the command line, on a recorded session:
// the run's seed and workload as run reach run.sh; a run without a kernel
// .config and a passing run are refused with the reason.
func TestReproducerAndMinimizeCommands(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "results", "ext4-journal-defrag", "20261128-100000")
	writeSession(t, dir, "", sessionPlan(t))
	run := filepath.Join(dir, "fallback", "2")
	casePath := "../../cases/ext4-journal-defrag"
	bin := filepath.Join(t.TempDir(), "pbguest")
	build := exec.Command("go", "build", "-o", bin, "../../guest/cmd/pbguest")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	out := filepath.Join(t.TempDir(), "repro")
	if text, err := runCLI(t, "reproducer", run, "--case", casePath, "--guest-bin", bin, "-o", out); err == nil || !strings.Contains(err.Error(), "no .config") {
		t.Fatalf("no config: %v\n%s", err, text)
	}
	sum, err := report.Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(t.TempDir(), "config")
	os.WriteFile(config, []byte("CONFIG_EXT4_FS=y\n"), 0o644)
	sum.Variants[1].Kernel.Config = config
	if err := report.Write(dir, sum); err != nil {
		t.Fatal(err)
	}
	text, err := runCLI(t, "reproducer", run, "--case", casePath, "--guest-bin", bin, "-o", out)
	if err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	script, err := os.ReadFile(filepath.Join(out, "run.sh"))
	if err != nil {
		t.Fatal(err)
	}
	// Seed 9 and the 5 s workload of summary.json, not the case's 20 s.
	if !strings.Contains(string(script), "--seed 9 --mode mmap --id 0 --duration 5s") {
		t.Errorf("run.sh:\n%s", script)
	}
	if got, _ := os.ReadFile(filepath.Join(out, "config")); string(got) != "CONFIG_EXT4_FS=y\n" {
		t.Errorf("config %q", got)
	}
	if _, err := runCLI(t, "reproducer", run, "--case", casePath, "--guest-bin", bin, "-o", out); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("second write into the same directory: %v", err)
	}
	pass := filepath.Join(dir, "eopnotsupp", "0")
	if _, err := runCLI(t, "minimize", pass, "--case", casePath, "--guest-bin", bin); err == nil || !strings.Contains(err.Error(), "nothing to minimize") {
		t.Errorf("minimize a passing run: %v", err)
	}
	if _, err := runCLI(t, "minimize", run, "--case", casePath, "--guest-bin", bin, "-n", "2", "-k", "3"); err == nil || !strings.Contains(err.Error(), "k <= n") {
		t.Errorf("rule 3 of 2: %v", err)
	}
}
