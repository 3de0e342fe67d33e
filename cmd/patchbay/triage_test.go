package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func runTriage(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	cmd := newTriageCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetIn(strings.NewReader(stdin))
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func TestTriageCommand(t *testing.T) {
	out, err := runTriage(t, "", "../../triage/testdata/real/provoke-lockdep-circular.txt", "../../triage/testdata/real/run-fallback-pass.txt")
	if exitCode(err) != 1 {
		t.Fatalf("exit %d (%v), want 1 for a severe finding", exitCode(err), err)
	}
	for _, want := range []string{"[lockdep] possible deadlock in pb_lockdep_circular", "-> #1 pb_mutex_b", "run-fallback-pass.txt: no findings"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// A clean log from stdin exits 0 and --json is machine-readable.
	out, err = runTriage(t, "[    1.0][ T1] Linux version 6.12\n", "--json", "-")
	if err != nil {
		t.Fatal(err)
	}
	var files []triagedFile
	if err := json.Unmarshal([]byte(out), &files); err != nil || len(files) != 1 || len(files[0].Findings) != 0 {
		t.Fatalf("json %q: %v", out, err)
	}
	if !strings.Contains(out, `"findings": []`) {
		t.Errorf("no findings is not an empty list:\n%s", out)
	}
	if _, err := runTriage(t, "", "no-such-file.txt"); err == nil || !strings.Contains(err.Error(), "no-such-file.txt") {
		t.Errorf("missing file: %v", err)
	}
}
