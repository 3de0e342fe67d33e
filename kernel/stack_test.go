package kernel

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func subjects(ps []Patch) []string {
	var s []string
	for _, p := range ps {
		s = append(s, p.Subject)
	}
	return s
}

func TestExpandMboxLikeGitAm(t *testing.T) {
	dir := t.TempDir()
	cover := "From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001\nFrom: T <t@x>\nSubject: [PATCH 0/2] ext4: a series\n\nWhy.\n\n"
	// A folded, RFC 2047 encoded subject, as mail clients write them.
	second := strings.Replace(fakeMail(2, 2, "b.c", "int b;", "int B;"), "Subject: [PATCH 2/2] change b.c",
		"Subject: [PATCH 2/2] =?UTF-8?q?ext4:_caf=C3=A9?=\n the long tail", 1)
	mbox := writeFile(t, dir, "series.mbx", cover+fakeMail(1, 2, "a.c", "int a;", "int A;")+second)
	ps, err := ExpandPatches([]string{mbox})
	if err != nil {
		t.Fatal(err)
	}
	if got := subjects(ps); len(got) != 2 || got[0] != "[PATCH 1/2] change a.c" || got[1] != "[PATCH 2/2] ext4: café the long tail" {
		t.Fatalf("subjects = %q", got)
	}
	if ps[1].Ref() != mbox+"#2" || ps[1].Name() != "series.mbx[2/2]" || ps[1].Index != 2 || ps[1].Count != 2 {
		t.Errorf("member 2 = %s %s %d/%d", ps[1].Ref(), ps[1].Name(), ps[1].Index, ps[1].Count)
	}
	if !strings.HasPrefix(string(ps[1].Data), "From ") || strings.Contains(string(ps[1].Data), "change a.c") {
		t.Errorf("member 2 data is not exactly the second mail:\n%s", ps[1].Data)
	}
	// FILE#N is the Nth patch again; out of range is an error.
	one, err := ExpandPatches([]string{ps[1].Ref()})
	if err != nil || len(one) != 1 || string(one[0].Data) != string(ps[1].Data) {
		t.Fatalf("%s: %v %v", ps[1].Ref(), one, err)
	}
	if _, err := ExpandPatches([]string{mbox + "#3"}); err == nil || !strings.Contains(err.Error(), "holds 2 patch(es), there is no #3") {
		t.Errorf("#3: %v", err)
	}
}

func TestExpandSingleFilesKeepTheirBytes(t *testing.T) {
	dir := t.TempDir()
	diff := "--- a/src/a.c\n+++ b/src/a.c\n@@ -1 +1 @@\n-int a;\n+int A;\n"
	plain := writeFile(t, dir, "fix.diff", diff)
	single := writeFile(t, dir, "0001-one.patch", fakeMail(1, 1, "a.c", "int a;", "int A;"))
	ps, err := ExpandPatches([]string{plain, single})
	if err != nil {
		t.Fatal(err)
	}
	if ps[0].Subject != "fix.diff" || ps[0].Ref() != plain || string(ps[0].Data) != diff {
		t.Errorf("plain diff = %+v", ps[0])
	}
	whole, _ := os.ReadFile(single)
	if ps[1].Subject != "[PATCH 1/1] change a.c" || ps[1].Ref() != single || string(ps[1].Data) != string(whole) {
		t.Errorf("single mail = %+v", ps[1])
	}
	// The key of a one-patch file is what it was before stacks existed:
	// kernels built then are still hits.
	h := kernelKey("base", ps[:1])
	if h != kernelKey("base", []Patch{{Data: []byte(diff)}}) {
		t.Error("key depends on more than the bytes")
	}
}

func TestExpandDirectoryAndSeries(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "p/0002-b.patch", fakeMail(1, 1, "b.c", "int b;", "int B;"))
	writeFile(t, dir, "p/0001-a.patch", fakeMail(1, 1, "a.c", "int a;", "int A;"))
	writeFile(t, dir, "p/0003-c.mbx", fakeMail(1, 2, "a.c", "int A;", "int AA;")+fakeMail(2, 2, "b.c", "int B;", "int BB;"))
	writeFile(t, dir, "p/README", "not a patch")
	ps, err := ExpandPatches([]string{filepath.Join(dir, "p")})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(subjects(ps), "|"); got != "[PATCH 1/1] change a.c|[PATCH 1/1] change b.c|[PATCH 1/2] change a.c|[PATCH 2/2] change b.c" {
		t.Errorf("directory order = %s", got)
	}
	series := writeFile(t, dir, "p/series", "# quilt series\n0002-b.patch -p1\n\n  0001-a.patch # first after all\n")
	for _, path := range []string{series, filepath.Join(dir, "p")} { // a dir with a series file follows it
		ps, err := ExpandPatches([]string{path})
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(subjects(ps), "|"); got != "[PATCH 1/1] change b.c|[PATCH 1/1] change a.c" {
			t.Errorf("%s: order = %s", path, got)
		}
	}
	bad := []struct{ body, want string }{
		{"0001-a.patch\nnope.patch\n", "series:2: nope.patch: no such file"},
		{"0001-a.patch -p0\n", "series:1: 0001-a.patch: option \"-p0\" not supported"},
		{"# nothing\n\n", "lists no patches"},
	}
	for _, b := range bad {
		os.WriteFile(series, []byte(b.body), 0o644)
		if _, err := ExpandPatches([]string{series}); err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("series %q: err = %v, want %q", b.body, err, b.want)
		}
	}
	empty := filepath.Join(dir, "empty")
	os.Mkdir(empty, 0o755)
	if _, err := ExpandPatches([]string{empty}); err == nil || !strings.Contains(err.Error(), "no *.patch") {
		t.Errorf("empty dir: %v", err)
	}
}

func TestExpandRejectsNonPatches(t *testing.T) {
	dir := t.TempDir()
	for name, want := range map[string]string{
		"notes.patch":  "no diff in it",
		"blank.patch":  "the file is empty",
		"nomails.mbox": "an mbox with zero mails (no \"From <id> <date>\" separator line and no diff)",
	} {
		body := "just some text\n"
		if name == "blank.patch" {
			body = "\n\n"
		}
		p := writeFile(t, dir, name, body)
		if _, err := ExpandPatches([]string{p}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want %q", name, err, want)
		}
	}
	twoNoDiff := writeFile(t, dir, "x.mbx", fakeMail(1, 2, "a.c", "x", "y")+"From 0123 Mon Sep 17 00:00:00 2001\nSubject: [PATCH 2/2] words only\n\nno diff\n")
	if _, err := ExpandPatches([]string{twoNoDiff}); err == nil || !strings.Contains(err.Error(), `mail 2 of 2 ("[PATCH 2/2] words only") has no diff`) {
		t.Errorf("mail without diff: %v", err)
	}
}

func TestTouchedPaths(t *testing.T) {
	data := "diff --git a/fs/ext4/old.c b/fs/ext4/new.c\nsimilarity index 90%\nrename from fs/ext4/old.c\nrename to fs/ext4/new.c\n" +
		"--- a/fs/ext4/old.c\t2024-01-01\n+++ b/fs/ext4/new.c\n@@ -1 +1 @@\n--- a removed line that looks like a header\n" +
		"--- /dev/null\n+++ b/include/linux/x.h\n--- a/../../etc/passwd\n"
	got := strings.Join(touchedPaths([]byte(data)), " ")
	for _, want := range []string{"fs/ext4/old.c", "fs/ext4/new.c", "include/linux/x.h"} {
		if !strings.Contains(got, want) {
			t.Errorf("touched = %s, lacks %s", got, want)
		}
	}
	if strings.Contains(got, "etc/passwd") || strings.Contains(got, "/dev/null") {
		t.Errorf("touched = %s", got)
	}
}

// The farm: patching a file must materialize it and its directories, and
// never write into the base.
func TestMaterializeNeverWritesTheBase(t *testing.T) {
	base := filepath.Join(t.TempDir(), "base")
	writeFile(t, base, "fs/ext4/move_extent.c", original)
	writeFile(t, base, "fs/ext4/inode.c", "inode\n")
	writeFile(t, base, "Makefile", "all:\n")
	os.MkdirAll(filepath.Join(base, "out"), 0o755)
	tree := filepath.Join(t.TempDir(), "tree")
	if err := makeFarm(base, tree); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(tree, "out")); err == nil {
		t.Error("the farm links out/ (objects must be real copies)")
	}
	p := writeFile(t, t.TempDir(), "x.patch", "--- a/fs/ext4/move_extent.c\n+++ b/fs/ext4/move_extent.c\n@@ -2,3 +2,3 @@\n line two\n-line three\n+line 3\n line four\n"+
		"--- /dev/null\n+++ b/fs/ext4/new.c\n@@ -0,0 +1 @@\n+new\n")
	if err := applyPatch(context.Background(), tree, loadPatch(t, p), func(rel string) error { return materialize(tree, base, rel) }); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(base, "fs/ext4/move_extent.c")); string(got) != original {
		t.Fatalf("base changed:\n%s", got)
	}
	if _, err := os.Stat(filepath.Join(base, "fs/ext4/new.c")); err == nil {
		t.Fatal("new file created in the base")
	}
	if got, _ := os.ReadFile(filepath.Join(tree, "fs/ext4/move_extent.c")); !strings.Contains(string(got), "line 3\n") {
		t.Fatalf("tree not patched:\n%s", got)
	}
	if fi, _ := os.Lstat(filepath.Join(tree, "fs/ext4/inode.c")); fi.Mode()&os.ModeSymlink == 0 {
		t.Error("an untouched file was copied instead of linked")
	}
}
