package kernel

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The attack from issue 13: a range whose "revision" is a git option.
// format-patch would open --output=FILE (truncating it) before failing.
func TestGitRangeOptionInjectionRefused(t *testing.T) {
	repo := fakeKernel(t).Name
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("precious\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{
		"git:" + repo + "@--output=" + dir + "/../" + filepath.Base(dir) + "/victim",
		"git:" + repo + "@HEAD..--output=" + victim,
		"git:" + repo + "@HEAD..--x",
	} {
		_, err := ExpandPatches([]string{ref})
		if err == nil || !strings.Contains(err.Error(), "starts with '-'") || !strings.Contains(err.Error(), ref) {
			t.Errorf("%s: want a refusal naming the input, got %v", ref, err)
		}
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious\n" {
		t.Fatalf("victim file changed to %q", b)
	}
	if err := CheckGitRevisions("git:" + repo + "@HEAD..--x"); err == nil || !strings.Contains(err.Error(), "range end") {
		t.Errorf("range end with '-': %v", err)
	}
}

// A git source's ref is refused when it starts with '-', and resolved with
// --end-of-options to a commit id otherwise.
func TestGitSourceRevisionRefused(t *testing.T) {
	if _, err := ParseSource("git:/tmp/x@--output=/tmp/y"); err == nil || !strings.Contains(err.Error(), "starts with '-'") {
		t.Fatalf("want refusal, got %v", err)
	}
	repo := fakeKernel(t).Name
	src, err := ParseSource("git:" + repo + "@HEAD")
	if err != nil {
		t.Fatal(err)
	}
	pinned, _, err := src.resolve(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(pinned.Ref) != 40 || pinned.Ref != gitIn(t, repo, "rev-parse", "HEAD") {
		t.Fatalf("pinned ref %q, want HEAD's commit id", pinned.Ref)
	}
	// Even a Source built by hand (e.g. from a received run.json) is refused.
	bad := Source{Kind: "git", Name: repo, Ref: "--output=" + filepath.Join(t.TempDir(), "x")}
	if _, _, err := bad.resolve(t.Context()); err == nil || !strings.Contains(err.Error(), "starts with '-'") {
		t.Fatalf("hand-made source: %v", err)
	}
}

// A patch or series that is a FIFO, /dev/zero or too big is refused at once.
func TestPatchFileHostileKinds(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "series.mbox")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Skip(err)
	}
	zero := filepath.Join(dir, "zero.patch")
	os.Symlink("/dev/zero", zero)
	series := filepath.Join(dir, "series")
	os.Symlink("/dev/zero", series)
	frag := filepath.Join(dir, "x.config")
	syscall.Mkfifo(frag, 0o644)
	for path, want := range map[string]string{fifo: "a FIFO", zero: "symlink to /dev/zero", dir: "symlink to /dev/zero"} {
		done := make(chan error, 1)
		go func() { _, err := ExpandPatches([]string{path}); done <- err }()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%s: got %v, want %q", path, err, want)
			}
		case <-time.After(time.Second):
			t.Fatalf("%s: no answer within a second", path)
		}
	}
	if _, err := parseFragment(frag); err == nil || !strings.Contains(err.Error(), "a FIFO") {
		t.Errorf("fragment FIFO: %v", err)
	}
}
