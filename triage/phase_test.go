package triage

import (
	"os"
	"strings"
	"testing"
)

func TestPhases(t *testing.T) {
	// A real WARNING report, placed before any marker, after "setup" and
	// after "workload".
	raw, err := os.ReadFile("testdata/real/lkdtm-WARNING.txt")
	if err != nil {
		t.Fatal(err)
	}
	_, log, _ := strings.Cut(string(raw), "\n\n")
	var report []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "[ cut here ]") || len(report) > 0 {
			report = append(report, l)
		}
		if len(report) > 0 && strings.Contains(l, "end trace") {
			break
		}
	}
	if len(report) < 5 {
		t.Fatalf("no WARNING report in the fixture")
	}
	block := strings.Join(report, "\n") + "\n"
	marker := func(p string) string { return "[   14.359292][   T76] patchbay: phase " + p + "\n" }
	for _, tt := range []struct{ input, want string }{
		{block, "boot"},
		{marker("setup") + block, "setup"},
		{marker("setup") + marker("workload") + block + marker("verify"), "workload"},
	} {
		f := Parse([]byte(tt.input))
		if len(f) != 1 {
			t.Fatalf("%d findings, want 1", len(f))
		}
		if f[0].Phase != tt.want {
			t.Errorf("phase %q, want %q", f[0].Phase, tt.want)
		}
	}
}
