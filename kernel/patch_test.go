package kernel

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const original = "line one\nline two\nline three\nline four\nline five\n"

func writeTree(t *testing.T) string {
	t.Helper()
	tree := t.TempDir()
	os.MkdirAll(filepath.Join(tree, "fs/ext4"), 0o755)
	if err := os.WriteFile(filepath.Join(tree, "fs/ext4/move_extent.c"), []byte(original), 0o644); err != nil {
		t.Fatal(err)
	}
	return tree
}

func TestApplyPatchFailureNamesPatchSubjectAndHunk(t *testing.T) {
	if _, err := exec.LookPath("patch"); err != nil {
		t.Skip("patch(1) not installed")
	}
	tree := writeTree(t)
	mail := `From: someone <a@b>
Subject: [PATCH 2/3] ext4: change line three

---
--- a/fs/ext4/move_extent.c
+++ b/fs/ext4/move_extent.c
@@ -1,5 +1,5 @@
 line one
 line two
-line THREE-that-is-not-there
+line 3
 line four
 line five
`
	p := filepath.Join(t.TempDir(), "0002-change.patch")
	os.WriteFile(p, []byte(mail), 0o644)
	err := applyPatch(context.Background(), tree, loadPatch(t, p), nil)
	var pe *PatchError
	if !errors.As(err, &pe) {
		t.Fatalf("err = %v, want a PatchError", err)
	}
	msg := err.Error()
	for _, want := range []string{"0002-change.patch", "[PATCH 2/3] ext4: change line three", "fs/ext4/move_extent.c: Hunk #1 FAILED at 1"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	data, _ := os.ReadFile(filepath.Join(tree, "fs/ext4/move_extent.c"))
	if string(data) != original {
		t.Errorf("a failed patch changed the tree:\n%s", data)
	}
}

func TestApplyPatchBreaksHardLinks(t *testing.T) {
	if _, err := exec.LookPath("patch"); err != nil {
		t.Skip("patch(1) not installed")
	}
	base := writeTree(t)
	variant := filepath.Join(t.TempDir(), "v")
	if err := exec.Command("cp", "-al", base, variant).Run(); err != nil {
		t.Fatal(err)
	}
	diff := "--- a/fs/ext4/move_extent.c\n+++ b/fs/ext4/move_extent.c\n@@ -2,3 +2,3 @@\n line two\n-line three\n+line 3\n line four\n"
	p := filepath.Join(t.TempDir(), "x.diff")
	os.WriteFile(p, []byte(diff), 0o644)
	if err := applyPatch(context.Background(), variant, loadPatch(t, p), nil); err != nil {
		t.Fatal(err)
	}
	// The variant tree shares files with the base by hard links: patching
	// must replace the file, never write through the link into the base.
	got, _ := os.ReadFile(filepath.Join(base, "fs/ext4/move_extent.c"))
	if string(got) != original {
		t.Fatalf("base tree modified through a hard link:\n%s", got)
	}
	got, _ = os.ReadFile(filepath.Join(variant, "fs/ext4/move_extent.c"))
	if !strings.Contains(string(got), "line 3\n") {
		t.Fatalf("variant not patched:\n%s", got)
	}
}

func TestShippedPatchSubject(t *testing.T) {
	got := loadPatch(t, "../cases/ext4-journal-defrag/0001-ext4-fall-back-from-data-journaling-for-online-defrag.patch").Subject
	if !strings.Contains(got, "fall back from data journaling") {
		t.Errorf("subject = %q", got)
	}
}

// loadPatch reads a file that holds exactly one patch.
func loadPatch(t *testing.T, path string) Patch {
	t.Helper()
	ps, err := ExpandPatches([]string{path})
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 1 {
		t.Fatalf("%s: %d patches, want 1", path, len(ps))
	}
	return ps[0]
}
