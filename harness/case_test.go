package harness

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"patchbay/kernel"
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
	// Plain patch lists expand to themselves: the same files, the same keys.
	for _, n := range c.VariantNames() {
		stack, err := c.PatchStack(n)
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		for _, p := range c.Variants[n].Patches {
			want = append(want, c.Path(p))
		}
		if strings.Join(stack, " ") != strings.Join(want, " ") {
			t.Errorf("%s: stack %v, want %v", n, stack, want)
		}
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
			[]string{"case.yaml:9: workload.mmap_writer", "mmap_writer"}},
		{"bad duration", strings.Replace(goodCase, "  mmap_writers: 1", "  mmap_writers: 1\n  duration: soon", 1),
			[]string{"case.yaml:9: workload.duration", "not a duration"}},
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
		{"large folios without the iomap check", strings.Replace(goodCase, "  journal_data: true", "  journal_data: true\n  require_large_folios: true", 1),
			[]string{"filesystem.require_large_folios", "check_buffered_iomap"}},
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

// mboxOf writes an mbox of one-hunk mails with the given subjects.
func mboxOf(subjects ...string) string {
	var b strings.Builder
	for i, s := range subjects {
		fmt.Fprintf(&b, "From %040d Mon Sep 17 00:00:00 2001\nFrom: T <t@example.org>\nSubject: %s\n\n---\n", i+1, s)
		fmt.Fprintf(&b, "--- a/f%d.c\n+++ b/f%d.c\n@@ -1 +1 @@\n-a\n+b\n-- \n2.39.5\n\n", i, i)
	}
	return b.String()
}

const stackCase = `name: t
kernel:
  source: debian:linux-source-6.12
workload:
  mmap_writers: 1
baseline: series
variants:
  series:
    patches: [series.mbx]
  no-two:
    base: series
    drop: ["ext4: two"]
  swap:
    base: no-two
    replace:
      - match: 2
        with: v2.patch
    add: [extra]
  quilt:
    patches: [quilt/series]
    drop: [1]
`

func writeStackCase(t *testing.T, yaml string) string {
	t.Helper()
	p := writeCase(t, yaml)
	dir := filepath.Dir(p)
	files := map[string]string{
		"series.mbx":         mboxOf("[PATCH 1/3] ext4: one", "[PATCH 2/3] ext4: two", "[PATCH 3/3] jbd2: three"),
		"v2.patch":           mboxOf("[PATCH v2 3/3] jbd2: three, again"),
		"extra/0002-y.patch": "--- a/y\n+++ b/y\n@@ -1 +1 @@\n-a\n+b\n",
		"extra/0001-x.patch": "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n",
		"quilt/series":       "# two patches\nq1.diff\n\nq2.diff -p1\n",
		"quilt/q1.diff":      "--- a/q1\n+++ b/q1\n@@ -1 +1 @@\n-a\n+b\n",
		"quilt/q2.diff":      "--- a/q2\n+++ b/q2\n@@ -1 +1 @@\n-a\n+b\n",
		"empty.mbx":          "",
	}
	for name, body := range files {
		f := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(f), 0o755)
		if err := os.WriteFile(f, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func TestPatchStackBaseDropReplaceAdd(t *testing.T) {
	p := writeStackCase(t, stackCase)
	c, err := LoadCase(p)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(p)
	rel := func(refs []string) string {
		var out []string
		for _, r := range refs {
			out = append(out, strings.TrimPrefix(r, dir+"/"))
		}
		return strings.Join(out, " ")
	}
	for variant, want := range map[string]string{
		"series": "series.mbx#1 series.mbx#2 series.mbx#3",
		"no-two": "series.mbx#1 series.mbx#3",
		"swap":   "series.mbx#1 v2.patch extra/0001-x.patch extra/0002-y.patch",
		"quilt":  "quilt/q2.diff",
	} {
		got, err := c.PatchStack(variant)
		if err != nil {
			t.Fatalf("%s: %v", variant, err)
		}
		if rel(got) != want {
			t.Errorf("%s: stack %s, want %s", variant, rel(got), want)
		}
		// What PatchStack returns is what kernel.Spec.Patches takes.
		if ps, err := kernel.ExpandPatches(got); err != nil || len(ps) != len(got) {
			t.Errorf("%s: the stack does not expand to itself: %v", variant, err)
		}
	}
	if _, err := c.PatchStack("nope"); err == nil || !strings.Contains(err.Error(), `no variant "nope"`) {
		t.Errorf("unknown variant: %v", err)
	}
}

// lineNo is the 1-based line of the first line of text containing s.
func lineNo(text, s string) int {
	for i, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			return i + 1
		}
	}
	return 0
}

func TestPatchStackErrorsNameLineAndField(t *testing.T) {
	tests := []struct {
		name, from, to string // replace from with to in stackCase
		line           string // the case.yaml line the error must point at
		want           string
	}{
		{"unknown base", "base: no-two", "base: no-three", "base: no-three",
			`variants.swap.base: "no-three" is not a variant`},
		{"drop matches none", `drop: ["ext4: two"]`, `drop: ["xfs"]`, `drop: ["xfs"]`,
			`variants.no-two.drop.0: "xfs" matches no patch of the stack (1 "[PATCH 1/3] ext4: one", 2 "[PATCH 2/3] ext4: two", 3 "[PATCH 3/3] jbd2: three")`},
		{"drop matches several", `drop: ["ext4: two"]`, `drop: ["ext4"]`, `drop: ["ext4"]`,
			`variants.no-two.drop.0: "ext4" matches 2 patches (1 "[PATCH 1/3] ext4: one", 2 "[PATCH 2/3] ext4: two"): use a longer substring or an index`},
		{"drop index out of range", `drop: [1]`, `drop: [7]`, `drop: [7]`,
			"variants.quilt.drop.0: patch 7 does not exist: the stack has 2 patch(es)"},
		{"replace matches none", "match: 2", `match: "ext5"`, `match: "ext5"`,
			`variants.swap.replace.0.match: "ext5" matches no patch`},
		{"replace with a missing file", "with: v2.patch", "with: v3.patch", "with: v3.patch",
			"variants.swap.replace.0.with: v3.patch: no such file"},
		{"selected twice", "    add: [extra]", "    drop: [2]\n    add: [extra]", "match: 2",
			"variants.swap.replace.0.match: #2 selects patch 2, already selected by variants.swap.drop.0"},
		{"cycle", "base: series", "base: swap", "base: swap",
			"variants.no-two.base: cycle: no-two -> swap -> no-two"},
		{"own base", "base: series", "base: no-two", "base: no-two",
			"variants.no-two.base: a variant cannot be its own base"},
		{"mbox with zero mails", "patches: [series.mbx]", "patches: [empty.mbx]", "patches: [empty.mbx]",
			"variants.series.patches.0: patch " /* path */},
		{"add missing", "add: [extra]", "add: [extra, nope/]", "add: [extra, nope/]",
			"variants.swap.add.1: nope/: no such file"},
		{"index zero", `drop: [1]`, `drop: [0]`, `drop: [0]`,
			"patch index 0: want 1 or more"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			yaml := strings.Replace(stackCase, tt.from, tt.to, 1)
			_, err := LoadCase(writeStackCase(t, yaml))
			if err == nil {
				t.Fatal("no error")
			}
			want := fmt.Sprintf("case.yaml:%d: %s", lineNo(yaml, tt.line), tt.want)
			if tt.name == "index zero" {
				want = fmt.Sprintf("case.yaml:%d: variants.quilt.drop.0: %s", lineNo(yaml, tt.line), tt.want)
			}
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error:\n%v\nwant it to contain:\n%s", err, want)
			}
			if tt.name == "mbox with zero mails" && !strings.Contains(err.Error(), "an mbox with zero mails") {
				t.Errorf("error %v", err)
			}
			if tt.name == "cycle" && strings.Count(err.Error(), ": cycle: ") != 2 {
				t.Errorf("a cycle of two variants is reported by both, and only once each:\n%v", err)
			}
		})
	}
}
