package kernel

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// A variant whose patch does not apply, on a built base, and a git source
// whose revision is refused or missing: each failure leaves no partial
// entry in the cache (no variant tree, no kernel, no temp directory, no
// kernel lock) beside the complete base.
func TestFailedBuildLeavesNothingPartial(t *testing.T) {
	ctx := context.Background()
	cache := t.TempDir()
	dir := t.TempDir()
	base := fakeSpec(t)
	a, err := (&Builder{CacheDir: cache, Jobs: 1}).Build(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	bad := base
	bad.Patches = []string{writeFile(t, dir, "two.mbx", fakeMail(1, 2, "a.c", "int a;", "int A;")+fakeMail(2, 2, "b.c", "int nothere;", "int B;"))}
	if _, err := (&Builder{CacheDir: cache, Jobs: 1}).Build(ctx, bad); err == nil || !strings.Contains(err.Error(), "does not apply") {
		t.Fatalf("want a patch that does not apply, got %v", err)
	}
	assertNothingBuilt(t, cache, a.Key)
	for _, l := range cacheEntries(t, cache, "locks") {
		if strings.HasPrefix(l, "kernel-") && l != "kernel-"+a.Key {
			t.Errorf("locks/%s left after a failure", l)
		}
	}
	repo := base.Source.Name
	for _, ref := range []string{"nope", "--output=" + filepath.Join(dir, "x")} {
		s := base
		s.Source = Source{Kind: "git", Name: repo, Ref: ref}
		if _, err := (&Builder{CacheDir: cache, Jobs: 1}).Build(ctx, s); err == nil {
			t.Fatalf("git source @%s: no error", ref)
		}
		assertNothingBuilt(t, cache, a.Key)
		if n := len(cacheEntries(t, cache, "src")); n != 1 {
			t.Errorf("src has %d entries after a failed git source, want the one pristine: %v", n, cacheEntries(t, cache, "src"))
		}
	}
}
