package harness

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadShippedCase(t *testing.T) {
	c, err := LoadCase("../cases/ext4-journal-defrag")
	if err != nil {
		t.Fatal(err)
	}
	if got := c.VariantNames(); len(got) != 3 || got[0] != "eopnotsupp" || got[1] != "fallback" || got[2] != "fallback-flush" {
		t.Fatalf("variants = %v, want baseline eopnotsupp first, then fallback, fallback-flush", got)
	}
	if !c.Filesystem.JournalData || !strings.Contains(c.Filesystem.MountOptions, "nodelalloc") {
		t.Errorf("filesystem = %+v: the case must journal data under nodelalloc", c.Filesystem)
	}
	if c.Workload.Duration.D() != 20*time.Second {
		t.Errorf("duration = %v", c.Workload.Duration.D())
	}
	fb := c.Variants["fallback"]
	if len(fb.Patches) != 1 || fb.Expect.MinMoved == nil || *fb.Expect.MinMoved != 1 {
		t.Errorf("fallback = %+v", fb)
	}
	if e := c.Variants["eopnotsupp"].Expect; e.MinRefusedEOPNOTSUPP == nil || e.MaxMoved == nil || *e.MaxMoved != 0 {
		t.Errorf("eopnotsupp expectations = %+v", e)
	}
}

// writeCase writes a case file (and one patch it may name) into a temp dir.
func writeCase(t *testing.T, yaml string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "fix.patch"), []byte("--- a/x\n+++ b/x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "case.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const goodCase = `name: t
kernel:
  source: debian:linux-source-6.12
filesystem:
  mount_options: nodelalloc
  journal_data: true
workload:
  mmap_writers: 1
variants:
  a:
    patches: [fix.patch]
`

func TestCaseErrorsNameFileLineAndField(t *testing.T) {
	if _, err := LoadCase(writeCase(t, goodCase)); err != nil {
		t.Fatalf("good case: %v", err)
	}
	tests := []struct {
		name, yaml string
		want       []string // substrings of the error
	}{
		{"unknown field", strings.Replace(goodCase, "  mmap_writers: 1", "  mmap_writers: 1\n  mmap_writer: 2", 1),
			[]string{"case.yaml", "line 9", "mmap_writer"}},
		{"bad duration", strings.Replace(goodCase, "  mmap_writers: 1", "  mmap_writers: 1\n  duration: soon", 1),
			[]string{"line 9", "not a duration"}},
		{"missing patch", strings.Replace(goodCase, "[fix.patch]", "[nope.patch]", 1),
			[]string{"case.yaml:11: variants.a.patches.0: nope.patch: no such file"}},
		{"no writers", strings.Replace(goodCase, "  mmap_writers: 1", "  mmap_writers: 0", 1),
			[]string{"case.yaml:8: workload.mmap_writers"}},
		{"journal without nodelalloc", strings.Replace(goodCase, "nodelalloc", "noatime", 1),
			[]string{"case.yaml:6: filesystem.journal_data", "nodelalloc"}},
		{"unknown baseline", goodCase + "baseline: b\n",
			[]string{"case.yaml:12: baseline", `"b" is not a variant`}},
		{"bad variant name", strings.Replace(goodCase, "  a:", "  Bad Name:", 1),
			[]string{"variants.Bad Name", "lower case"}},
		{"too big for scratch", strings.Replace(goodCase, "  mmap_writers: 1", "  mmap_writers: 1\n  blocks: 100000", 1),
			[]string{"workload.blocks", "does not fit"}},
		{"not yaml", "name: [", []string{"case.yaml", "line"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadCase(writeCase(t, tt.yaml))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}
