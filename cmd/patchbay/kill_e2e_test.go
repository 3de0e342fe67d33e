package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"patchbay/record"
)

// The acceptance test: kill -9 of `patchbay run` after its first
// run, then `patchbay report` renders the finished run and names the rest.
// It boots a real VM (the stock kernel, cached): PATCHBAY_E2E only, under
// flock /tmp/patchbay-heavy.lock.
func TestKilledRunStillReports(t *testing.T) {
	if os.Getenv("PATCHBAY_E2E") == "" {
		t.Skip("set PATCHBAY_E2E=1: builds a kernel (cached) and boots QEMU")
	}
	bin := filepath.Join(t.TempDir(), "patchbay")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	results := t.TempDir()
	var log bytes.Buffer
	cmd := exec.Command(bin, "run", "../../cases/ext4-journal-defrag", "--variant", "eopnotsupp",
		"--runs", "3", "--jobs", "1", "--seed", "5", "--duration", "5s", "--results", results)
	cmd.Stdout, cmd.Stderr = &log, &log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	killed := false
	defer func() {
		if !killed {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	}()

	// Wait for the summary on disk to hold the first record.
	var dir string
	deadline := time.After(40 * time.Minute)
	for dir == "" {
		select {
		case err := <-exited:
			killed = true
			t.Fatalf("patchbay run ended before it was killed: %v\n%s", err, log.String())
		case <-deadline:
			t.Fatalf("no run finished in time:\n%s", log.String())
		case <-time.After(2 * time.Second):
		}
		paths, _ := filepath.Glob(filepath.Join(results, "*", "*", "summary.json"))
		for _, p := range paths {
			var s record.Summary
			data, err := os.ReadFile(p)
			if err != nil || json.Unmarshal(data, &s) != nil {
				t.Fatalf("summary.json unreadable while the session runs: %v\n%s", err, data)
			}
			if len(s.Variants) == 1 && len(s.Variants[0].Runs) >= 1 {
				dir = filepath.Dir(p)
			}
		}
	}
	// kill -9 of patchbay alone: QEMU follows it (Pdeathsig).
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-exited
	killed = true
	t.Logf("killed after the first run:\n%s", log.String())

	out, err := exec.Command(bin, "report", dir).CombinedOutput()
	// Exit status 0: report renders; the verdict is run's business.
	if err != nil {
		t.Fatalf("patchbay report %s: %v\n%s", dir, err, out)
	}
	t.Logf("\n%s", out)
	for _, want := range []string{"| runs | 1 |", "| not finished | #1 (seed 6), #2 (seed 7) |", "- eopnotsupp #2 (seed 7): not finished"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("report lacks %q", want)
		}
	}
	for _, f := range []string{"summary.md", "report.html", "junit.xml", "kcidb.json", "eopnotsupp/0/run.json"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		}
	}
}
