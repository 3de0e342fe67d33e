package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
	} {
		if rc, out := runCmd(t, tc.args...); rc != tc.rc || (rc != 0 && out != "") {
			t.Errorf("pbguest %v: rc %d stdout %q, want rc %d and no stdout", tc.args, rc, out, tc.rc)
		}
	}
}
