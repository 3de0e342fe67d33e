package kernel

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// realBase returns a Builder on the user's cache and the spec of the
// shipped case's base kernel, or skips when that base is not built (a
// from-scratch build takes 7-10 minutes here; `patchbay build cases/ext4-journal-defrag`).
func realBase(t *testing.T) (*Builder, Spec, string) {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: builds a real kernel variant")
	}
	cache := os.Getenv("PATCHBAY_CACHE")
	if cache == "" {
		d, err := os.UserCacheDir()
		if err != nil {
			t.Skip(err)
		}
		cache = filepath.Join(d, "patchbay")
	}
	ctx := context.Background()
	src, _ := ParseSource("debian:linux-source-6.12")
	_, srcID, err := src.resolve(ctx)
	if err != nil {
		t.Skip(err)
	}
	compiler, err := compilerVersion(ctx)
	if err != nil {
		t.Skip(err)
	}
	b := &Builder{CacheDir: cache}
	spec := Spec{Name: "real", Source: src, Fragments: []string{"../kconfig/base.config", "../kconfig/debug.config"}}
	for i, f := range spec.Fragments {
		spec.Fragments[i], _ = filepath.Abs(f)
	}
	baseKey, err := treeKey(srcID, compiler, b.cc(), spec.Fragments)
	if err != nil {
		t.Fatal(err)
	}
	tree := filepath.Join(cache, "trees", baseKey, "linux")
	if !exists(filepath.Join(cache, "trees", baseKey, "built")) {
		t.Skipf("the base kernel is not built in %s", cache)
	}
	return b, spec, tree
}

func TestRealVariantBuildFailure(t *testing.T) {
	b, spec, tree := realBase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	dir := t.TempDir()
	// A unique comment so the key is new even if a previous run crashed.
	patch := writeFile(t, dir, "0001-break.patch", fmt.Sprintf(`From 0123456789abcdef0123456789abcdef01234567 Mon Sep 17 00:00:00 2001
From: T <t@example.org>
Subject: [PATCH] ext4: break the build

---
--- a/fs/ext4/move_extent.c
+++ b/fs/ext4/move_extent.c
@@ -1,3 +1,5 @@
+/* %d */
+#error patchbay
%s`, time.Now().UnixNano(), contextLines(t, filepath.Join(tree, "fs/ext4/move_extent.c"), 3)))
	spec.Name = "real-error"
	spec.Patches = []string{patch}
	stack, err := ExpandPatches(spec.Patches)
	if err != nil {
		t.Fatal(err)
	}
	key := kernelKey(filepath.Base(filepath.Dir(tree)), stack)
	t.Cleanup(func() { os.Remove(filepath.Join(b.CacheDir, "logs", spec.Name+"-"+key+".log")) })

	_, err = b.Build(ctx, spec)
	if err == nil {
		t.Fatal("a kernel with #error built")
	}
	t.Logf("the error reads:\n%v", err)
	for _, want := range []string{"variant real-error: make bzImage: failed", "fs/ext4/move_extent.c", "#error patchbay", "full log: " + b.CacheDir + "/logs/"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q", want)
		}
	}
	for _, p := range []string{"kernels/" + key, "kernels/" + key + ".tmp", "trees/variant-" + key, "locks/kernel-" + key} {
		if exists(filepath.Join(b.CacheDir, p)) {
			t.Errorf("%s left behind", p)
		}
	}
}

func TestRealPatchThatDoesNotApply(t *testing.T) {
	b, spec, tree := realBase(t)
	patch := writeFile(t, t.TempDir(), "0001-stale.patch", `Subject: [PATCH] ext4: stale context

--- a/fs/ext4/move_extent.c
+++ b/fs/ext4/move_extent.c
@@ -1,3 +1,3 @@
-this line is not in move_extent.c
+nor this one
 at all
`)
	spec.Name = "real-stale"
	spec.Patches = []string{patch}
	start := time.Now()
	_, err := b.Build(context.Background(), spec)
	if err == nil || !strings.Contains(err.Error(), `patch 0001-stale.patch ("[PATCH] ext4: stale context") does not apply`) ||
		!strings.Contains(err.Error(), "fs/ext4/move_extent.c: Hunk #1 FAILED at 1") {
		t.Fatalf("err = %v", err)
	}
	// Patches apply before the objects are copied: failing is cheap.
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("a patch that does not apply took %s to report", d)
	}
	stack, _ := ExpandPatches(spec.Patches)
	key := kernelKey(filepath.Base(filepath.Dir(tree)), stack)
	for _, p := range []string{"kernels/" + key, "trees/variant-" + key, "locks/kernel-" + key} {
		if exists(filepath.Join(b.CacheDir, p)) {
			t.Errorf("%s left behind", p)
		}
	}
}

func contextLines(t *testing.T, path string, n int) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, l := range strings.SplitAfterN(string(data), "\n", n+1)[:n] {
		b.WriteString(" " + l)
	}
	return b.String()
}
