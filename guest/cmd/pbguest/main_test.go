package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"patchbay/guest/internal/ext4test"
)

func runCmd(t *testing.T, args ...string) (int, string) {
	t.Helper()
	var out, errb bytes.Buffer
	rc := run(args, &out, &errb)
	if rc != 0 {
		t.Logf("pbguest %s: rc %d stderr %s", strings.Join(args, " "), rc, errb.String())
	}
	return rc, out.String()
}

func TestCLIRoundTrip(t *testing.T) {
	dir := t.TempDir()
	common := []string{"--dir", filepath.Join(dir, "work"), "--files", "2", "--blocks", "16", "--writers", "1", "--seed", "5"}
	if rc, out := runCmd(t, append([]string{"prepare"}, common...)...); rc != 0 || !strings.Contains(out, `"journal_data_files":0`) {
		t.Fatalf("prepare rc %d out %s", rc, out)
	}
	rc, out := runCmd(t, append([]string{"write", "--mode", "pwrite", "--id", "0", "--duration", "100ms"}, common...)...)
	if rc != 0 {
		t.Fatalf("write rc %d", rc)
	}
	wpath := filepath.Join(dir, "w0.json")
	if err := os.WriteFile(wpath, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	rc, out = runCmd(t, append([]string{"verify", "--phase", "cli", "--mmap", "--expect", wpath}, common...)...)
	var rep struct {
		Phase    string         `json:"phase"`
		Blocks   int            `json:"blocks"`
		Counts   map[string]int `json:"counts"`
		BadTotal int            `json:"bad_total"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || rc != 0 {
		t.Fatalf("verify rc %d out %q: %v", rc, out, err)
	}
	if rep.Phase != "cli" || rep.Blocks != 32 || rep.Counts["ok"] != 32 || rep.BadTotal != 0 {
		t.Fatalf("verify report %+v", rep)
	}
	// Without --expect every rewritten block is now "future".
	_, out = runCmd(t, append([]string{"verify"}, common...)...)
	if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.Counts["future"] == 0 {
		t.Fatalf("verify without --expect: %s", out)
	}
}

func TestCLIExitCodes(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		rc   int
	}{
		{nil, 2},
		{[]string{"bogus"}, 2},
		{[]string{"prepare"}, 2},
		{[]string{"prepare", "--dir", dir, "--block-size", "100"}, 2},
		{[]string{"write", "--dir", dir, "--mode", "mmap"}, 2},
		{[]string{"write", "--dir", dir, "--mode", "mmap", "--id", "0"}, 1},
		{[]string{"verify", "--dir", dir, "stray"}, 2},
		{[]string{"verify", "--dir", dir, "--expect", filepath.Join(dir, "none.json")}, 1},
		{[]string{"prepare", "-h"}, 0},
		{[]string{"defrag", "--dir", dir, "--donor", "bogus"}, 2},
		{[]string{"e4defrag", "--files", "1"}, 2},
		{[]string{"e4defrag", "--dir", dir, "--timeout", "0s"}, 2},
		{[]string{"e4defrag", "--dir", dir, "--e4defrag", filepath.Join(dir, "none")}, 1},
	} {
		if rc, out := runCmd(t, tc.args...); rc != tc.rc || (rc != 0 && out != "") {
			t.Errorf("pbguest %v: rc %d stdout %q, want rc %d and no stdout", tc.args, rc, out, tc.rc)
		}
	}
}

// TestCLITool runs e4defrag with a stand-in tool and write with
// --fdatasync-every, and checks the JSON fields they add.
func TestCLITool(t *testing.T) {
	dir := t.TempDir()
	common := []string{"--dir", filepath.Join(dir, "work"), "--files", "2", "--blocks", "16", "--writers", "1", "--seed", "5"}
	if rc, _ := runCmd(t, append([]string{"prepare"}, common...)...); rc != 0 {
		t.Fatalf("prepare rc %d", rc)
	}
	rc, out := runCmd(t, append([]string{"write", "--mode", "pwrite", "--id", "0", "--duration", "100ms", "--fdatasync-every", "2"}, common...)...)
	var w struct {
		Writes     int64   `json:"writes"`
		Fdatasyncs int64   `json:"fdatasyncs"`
		WritesPerS float64 `json:"writes_per_s"`
	}
	if err := json.Unmarshal([]byte(out), &w); err != nil || rc != 0 || w.Fdatasyncs != w.Writes/2 || w.WritesPerS <= 0 {
		t.Fatalf("write rc %d %+v %v: %s", rc, w, err, out)
	}
	tool := filepath.Join(dir, "e4defrag")
	script := "#!/bin/sh\necho 'e4defrag 1.47.0 (5-Feb-2023)'\nprintf '[1/1]%s:\\t100%%  extents: 3 -> 1\\t[ OK ]\\n' \"$2\"\n"
	if err := os.WriteFile(tool, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	rc, out = runCmd(t, append([]string{"e4defrag", "--duration", "200ms", "--e4defrag", tool}, common...)...)
	var e struct {
		Tool       string         `json:"tool"`
		Attempts   int            `json:"attempts"`
		Results    map[string]int `json:"results"`
		ExitStatus map[string]int `json:"exit_status"`
	}
	if err := json.Unmarshal([]byte(out), &e); err != nil || rc != 0 || e.Tool != "e4defrag" || e.Attempts == 0 ||
		e.Results["ok"]+e.Results["no_outcome"] != e.Attempts || e.Results["ok"] == 0 {
		t.Fatalf("e4defrag rc %d %+v %v: %s", rc, e, err, out)
	}
}

// TestCLIDonor runs defrag with a non-default donor strategy on a
// loop-mounted ext4 of its own (MOVE_EXT is never tried on the host's
// temp dir) and checks that it moved extents and says how.
func TestCLIDonor(t *testing.T) {
	dir := ext4test.Mount(t, "")
	common := []string{"--dir", filepath.Join(dir, "work"), "--files", "2", "--blocks", "16", "--writers", "1", "--seed", "5"}
	if rc, _ := runCmd(t, append([]string{"prepare"}, common...)...); rc != 0 {
		t.Fatalf("prepare rc %d", rc)
	}
	rc, out := runCmd(t, append([]string{"defrag", "--donor", "shared", "--duration", "200ms", "--range-blocks", "4", "--busy-retries", "32"}, common...)...)
	var d struct {
		Donor     string         `json:"donor"`
		Results   map[string]int `json:"results"`
		MovesPerS float64        `json:"moves_per_s"`
	}
	if err := json.Unmarshal([]byte(out), &d); err != nil || rc != 0 || d.Donor != "shared" || d.Results["moved"] == 0 || d.MovesPerS <= 0 {
		t.Fatalf("defrag rc %d %+v %v: %s", rc, d, err, out)
	}
	rc, out = runCmd(t, append([]string{"verify", "--phase", "after-defrag"}, common...)...)
	var v struct {
		BadTotal int `json:"bad_total"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil || rc != 0 || v.BadTotal != 0 {
		t.Fatalf("verify after defrag rc %d: %v: %s", rc, err, out)
	}
}
