package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runWithin runs a command of the CLI with args and fails the test if it
// does not return within 10 s: a hang check (a blocking open or an endless
// read never returns), not a speed test; streaming 256 MiB of stdin to its
// cap took over a second on a loaded 2-core host.
func runWithin(t *testing.T, ctx context.Context, stdin io.Reader, args ...string) (string, error) {
	t.Helper()
	cmd := newRootCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	if stdin != nil {
		cmd.SetIn(stdin)
	}
	cmd.SetArgs(args)
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	select {
	case err := <-done:
		return out.String(), err
	case <-time.After(10 * time.Second):
		t.Fatalf("patchbay %v: no answer within 10 s", args)
		return "", nil
	}
}

func TestReportFIFOSummary(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(dir, "summary.json"), 0o644); err != nil {
		t.Skip(err)
	}
	_, err := runWithin(t, t.Context(), nil, "report", dir)
	if err == nil || !strings.Contains(err.Error(), "summary.json: not a regular file (a FIFO)") {
		t.Fatalf("got %v", err)
	}
}

func TestTriageHostileInputs(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "console.log")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Skip(err)
	}
	if _, err := runWithin(t, t.Context(), nil, "triage", fifo); err == nil || !strings.Contains(err.Error(), "a FIFO") {
		t.Errorf("FIFO: %v", err)
	}
	if _, err := runWithin(t, t.Context(), nil, "triage", "/dev/zero"); err == nil || !strings.Contains(err.Error(), "a character device") {
		t.Errorf("/dev/zero: %v", err)
	}
	// stdin is streamed under the cap...
	zero, err := os.Open("/dev/zero")
	if err != nil {
		t.Skip(err)
	}
	defer zero.Close()
	if _, err := runWithin(t, t.Context(), zero, "triage", "-"); err == nil || !strings.Contains(err.Error(), "stdin: larger than 256 MiB") {
		t.Errorf("stdin /dev/zero: %v", err)
	}
	// ... and a stdin that never ends gives way to a cancel (Ctrl-C).
	r, w, _ := os.Pipe()
	defer r.Close()
	defer w.Close()
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(100*time.Millisecond, cancel)
	if _, err := runWithin(t, ctx, r, "triage", "-"); err == nil || !strings.Contains(err.Error(), "canceled") {
		t.Errorf("blocked stdin, canceled: %v", err)
	}
}

// The built binary, as a user runs it: `patchbay run DIR` whose case.yaml is
// a FIFO fails at once; so does one that is a symlink to /dev/zero.
func TestCLIRunHostileCaseFile(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "patchbay")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "case.yaml")
	if err := syscall.Mkfifo(p, 0o644); err != nil {
		t.Skip(err)
	}
	for _, want := range []string{"a FIFO", "a symlink to /dev/zero"} {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		cmd := exec.CommandContext(ctx, bin, "run", "--results", t.TempDir(), dir)
		out, err := cmd.CombinedOutput()
		timedOut := ctx.Err() != nil
		cancel()
		if timedOut {
			t.Fatalf("patchbay run with %s case.yaml: still running after 5s", want)
		}
		if err == nil || !strings.Contains(string(out), want) {
			t.Errorf("patchbay run: %v\n%s\nwant %q", err, out, want)
		}
		os.Remove(p)
		os.Symlink("/dev/zero", p)
	}
}

// Negative (or meaningless zero) numbers on the command line are refused
// before anything runs, instead of quietly becoming the default.
func TestNegativeFlagsRefused(t *testing.T) {
	c := "../../cases/ext4-journal-defrag"
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "--runs", "-1", c}, "--runs -1: must not be negative"},
		{[]string{"run", "--runs", "0", c}, "--runs 0: must be at least 1"},
		{[]string{"run", "--jobs", "-2", c}, "--jobs -2: must not be negative"},
		{[]string{"run", "-j", "-2", c}, "--jobs -2: must not be negative"},
		{[]string{"run", "--duration", "-5s", c}, "--duration -5s: must be positive"},
		{[]string{"plan", "--runs", "-3", c}, "--runs -3: must not be negative"},
		{[]string{"plan", "--shards", "-1", c}, "--shards -1: must not be negative"},
		{[]string{"cache", "prune", "--older-than", "-1h"}, "--older-than -1h0m0s: must be positive"},
	} {
		_, err := runWithin(t, t.Context(), nil, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("patchbay %v: got %v, want %q", tc.args, err, tc.want)
		}
	}
	// A valid value still passes the check.
	if out, err := runWithin(t, t.Context(), nil, "plan", "--runs", "2", c); err != nil || !strings.Contains(out, "x 2 run(s)") {
		t.Errorf("plan --runs 2: %v\n%s", err, out)
	}
}
