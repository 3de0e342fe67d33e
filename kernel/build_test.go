package kernel

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// A fake kernel tree: the same make targets, O=out layout and
// merge_config.sh as the real one, built in milliseconds. bzImage is the
// concatenation of src/*.c; a source holding "#error" fails like gcc;
// merge_config.sh drops CONFIG_DROPME (as olddefconfig drops a symbol whose
// dependencies are missing).
const fakeMakefile = `O ?= out
SRCS := $(sort $(wildcard src/*.c))
.PHONY: tinyconfig olddefconfig bzImage
tinyconfig:
	mkdir -p $(O) && printf 'CONFIG_64BIT=y\n' > $(O)/.config
olddefconfig:
	@true
bzImage: $(O)/arch/x86/boot/bzImage
$(O)/arch/x86/boot/bzImage: $(SRCS) $(O)/.config
	@for f in $(SRCS); do grep -n '#error' $$f | sed "s|^\([0-9]*\):\(.*\)|$$f:\1:2: error: \2|"; done | grep . >&2 && exit 1 || true
	mkdir -p $(O)/arch/x86/boot $(O)/include/config
	for f in $(SRCS); do echo "  CC      $$f"; done
	cat $(SRCS) > $(O)/vmlinux
	cp $(O)/vmlinux $@
	echo "ffffffff81000000 T _text" > $(O)/System.map
	echo 6.12.0-fake > $(O)/include/config/kernel.release
`

const fakeMerge = `#!/bin/sh
# merge_config.sh -m -O out out/.config FRAGMENT...
shift 3; config=$1; shift
for f in "$@"; do grep -v DROPME "$f" >> "$config"; done
`

// fakeKernel makes a git work tree holding a fake kernel and returns a
// dir: source for it.
func fakeKernel(t *testing.T) Source {
	t.Helper()
	for _, tool := range []string{"git", "make", "patch", "gcc"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	dir := t.TempDir()
	files := map[string]string{
		"Makefile":                        fakeMakefile,
		"scripts/kconfig/merge_config.sh": fakeMerge,
		"src/a.c":                         "int a;\nint a2;\nint a3;\n",
		"src/b.c":                         "int b;\nint b2;\nint b3;\n",
	}
	for name, body := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	gitIn(t, dir, "init", "-q")
	gitIn(t, dir, "add", ".")
	gitIn(t, dir, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "fake kernel")
	return Source{Kind: "dir", Name: dir}
}

func gitIn(t *testing.T, dir string, args ...string) string {
	t.Helper()
	out, err := exec.Command("git", append([]string{"-C", dir}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func writeFile(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func fakeSpec(t *testing.T, patches ...string) Spec {
	t.Helper()
	frag := writeFile(t, t.TempDir(), "guest.config", "CONFIG_64BIT=y\n")
	return Spec{Name: "v", Source: fakeKernel(t), Fragments: []string{frag}, Patches: patches}
}

// fakeMail is one git format-patch mail changing line 1 of src/NAME.c.
func fakeMail(n, of int, file, from, to string) string {
	return "From 0123456789abcdef0123456789abcdef01234567 Mon Sep 17 00:00:00 2001\n" +
		"From: T <t@example.org>\n" +
		"Subject: [PATCH " + itoa(n) + "/" + itoa(of) + "] change " + file + "\n\n" +
		"---\n" +
		"--- a/src/" + file + "\n+++ b/src/" + file + "\n@@ -1,2 +1,2 @@\n-" + from + "\n+" + to + "\n int " + file[:1] + "2;\n" +
		"-- \n2.39.5\n\n"
}

func itoa(n int) string { return string(rune('0' + n)) }

// cacheEntries lists what is under cache/sub.
func cacheEntries(t *testing.T, cache, sub string) []string {
	t.Helper()
	es, _ := os.ReadDir(filepath.Join(cache, sub))
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func TestBuildVariantFromMboxOnCopyOnWriteTree(t *testing.T) {
	cache := t.TempDir()
	b := &Builder{CacheDir: cache, Jobs: 1}
	ctx := context.Background()
	spec := fakeSpec(t)
	base, err := b.Build(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	mbox := writeFile(t, t.TempDir(), "series.mbx", fakeMail(1, 2, "a.c", "int a;", "int A;")+fakeMail(2, 2, "b.c", "int b;", "int B;"))
	spec.Patches = []string{mbox}
	a, err := b.Build(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if a.Key == base.Key || a.Cached {
		t.Fatalf("variant %+v: want a fresh build with its own key", a)
	}
	img, _ := os.ReadFile(a.BzImage)
	if !strings.Contains(string(img), "int A;") || !strings.Contains(string(img), "int B;") {
		t.Errorf("bzImage lacks the patches:\n%s", img)
	}
	if len(a.Stack) != 2 || !strings.Contains(a.Stack[1], "series.mbx[2/2]: [PATCH 2/2] change b.c") {
		t.Errorf("stack = %q", a.Stack)
	}
	// The base tree is shared through links: it must not have changed.
	trees := cacheEntries(t, cache, "trees")
	if len(trees) != 1 {
		t.Fatalf("trees = %v, want only the base (the variant tree removed)", trees)
	}
	src, _ := os.ReadFile(filepath.Join(cache, "trees", trees[0], "linux/src/a.c"))
	if strings.Contains(string(src), "int A;") {
		t.Fatal("the variant's patch reached the base tree")
	}
	// Only what the patches touched was rebuilt... here: everything is one
	// rule, so check the log names the patched sources from the variant.
	log, _ := os.ReadFile(filepath.Join(a.Dir, "build.log"))
	if !strings.Contains(string(log), "CC      src/a.c") {
		t.Errorf("variant log:\n%s", log)
	}

	// A hit touches last-used; the member refs FILE#N build the same kernel.
	os.Remove(filepath.Join(a.Dir, lastUsed))
	spec.Patches = []string{mbox + "#1", mbox + "#2"}
	hit, err := b.Build(ctx, spec)
	if err != nil || !hit.Cached || hit.Key != a.Key {
		t.Fatalf("member refs: %+v, %v; want a hit on %s", hit, err, a.Key)
	}
	if _, err := os.Stat(filepath.Join(a.Dir, lastUsed)); err != nil {
		t.Errorf("cache hit did not record its use: %v", err)
	}
	// Any byte of any mail is in the key.
	os.WriteFile(mbox, []byte(fakeMail(1, 2, "a.c", "int a;", "int A;")+fakeMail(2, 2, "b.c", "int b;", "int BB;")), 0o644)
	spec.Patches = []string{mbox}
	c, err := b.Build(ctx, spec)
	if err != nil || c.Cached || c.Key == a.Key {
		t.Fatalf("changed mail: %+v, %v; want a new build", c, err)
	}
}

// assertNothingBuilt checks a failed build left no kernel (but those in
// keep), no tree and no temporary directory.
func assertNothingBuilt(t *testing.T, cache string, keep ...string) {
	t.Helper()
	for _, k := range cacheEntries(t, cache, "kernels") {
		if !slices.Contains(keep, k) {
			t.Errorf("kernels/%s after a failure", k)
		}
	}
	for _, tr := range cacheEntries(t, cache, "trees") {
		if strings.HasPrefix(tr, "variant-") || !exists(filepath.Join(cache, "trees", tr, "built")) {
			t.Errorf("trees/%s left after a failure", tr)
		}
	}
	for _, s := range cacheEntries(t, cache, "src") {
		if strings.HasSuffix(s, ".tmp") {
			t.Errorf("src/%s left after a failure", s)
		}
	}
}

func TestBuildBadInput(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	tests := []struct {
		name  string
		spec  func(t *testing.T) Spec
		wants []string
	}{
		{"unknown source kind", func(t *testing.T) Spec {
			return Spec{Name: "v", Source: Source{Kind: "svn", Name: "/x"}}
		}, []string{`kernel source svn:/x: unknown kind "svn"`, "git:PATH@REF"}},
		{"missing patch file", func(t *testing.T) Spec {
			return fakeSpec(t, filepath.Join(dir, "0001-nope.patch"))
		}, []string{"variant v: patch ", "0001-nope.patch: no such file"}},
		{"mbox with zero mails", func(t *testing.T) Spec {
			return fakeSpec(t, writeFile(t, dir, "empty.mbx", "\n"))
		}, []string{"empty.mbx: an mbox with zero mails"}},
		{"mbox with only a cover letter", func(t *testing.T) Spec {
			return fakeSpec(t, writeFile(t, dir, "cover.mbx", "From 0123 Mon Sep 17 00:00:00 2001\nSubject: [PATCH 0/2] a series\n\nhello\n"))
		}, []string{"cover.mbx: an mbox with zero mails that carry a patch"}},
		{"patch that does not apply", func(t *testing.T) Spec {
			return fakeSpec(t, writeFile(t, dir, "two.mbx", fakeMail(1, 2, "a.c", "int a;", "int A;")+fakeMail(2, 2, "b.c", "int nothere;", "int B;")))
		}, []string{`patch two.mbx[2/2] ("[PATCH 2/2] change b.c") does not apply`, "src/b.c: Hunk #1 FAILED at 1"}},
		{"dropped kconfig symbol", func(t *testing.T) Spec {
			s := fakeSpec(t)
			s.Fragments = []string{writeFile(t, t.TempDir(), "debug.config", "CONFIG_64BIT=y\nCONFIG_DROPME=y\n")}
			return s
		}, []string{"debug.config:2: CONFIG_DROPME=y requested", "CONFIG_DROPME=n"}},
		{"build failure", func(t *testing.T) Spec {
			return fakeSpec(t, writeFile(t, dir, "break.patch", "--- a/src/b.c\n+++ b/src/b.c\n@@ -1,2 +1,3 @@\n int b;\n+#error patchbay\n int b2;\n"))
		}, []string{"variant v: make bzImage: failed", "src/b.c:2:2: error: #error patchbay", "full log: "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cache := t.TempDir()
			spec := tt.spec(t)
			var keep []string
			if tt.name == "build failure" { // a built base, as in real use
				base := spec
				base.Patches = nil
				a, err := (&Builder{CacheDir: cache, Jobs: 1}).Build(ctx, base)
				if err != nil {
					t.Fatal(err)
				}
				keep = append(keep, a.Key)
			}
			_, err := (&Builder{CacheDir: cache, Jobs: 1}).Build(ctx, spec)
			if err == nil {
				t.Fatal("no error")
			}
			t.Logf("the error reads:\n%v", err)
			for _, w := range tt.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not say %q:\n%v", w, err)
				}
			}
			assertNothingBuilt(t, cache, keep...)
			if tt.name == "build failure" {
				logs := cacheEntries(t, cache, "logs")
				if len(logs) != 1 || !strings.Contains(err.Error(), filepath.Join(cache, "logs", logs[0])) {
					t.Errorf("logs = %v; the error should point at the kept log:\n%v", logs, err)
				}
			}
		})
	}
}

func TestParseSourceUnknownKind(t *testing.T) {
	for _, s := range []string{"svn:/x", "linux-6.12", "git:/x", "git:/x@", "debian:linux-6.12"} {
		if _, err := ParseSource(s); err == nil {
			t.Errorf("ParseSource(%q) accepted", s)
		}
	}
	src, err := ParseSource("git:/src/linux@v6.12")
	if err != nil || src.Kind != "git" || src.Name != "/src/linux" || src.Ref != "v6.12" || src.String() != "git:/src/linux@v6.12" {
		t.Errorf("git source = %+v, %v", src, err)
	}
}

// tinyTmpfs mounts a 1 MiB tmpfs, or skips.
func tinyTmpfs(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	return dir
}

func TestBuildOutOfDiskSpace(t *testing.T) {
	ctx := context.Background()
	t.Run("debian source", func(t *testing.T) {
		src, _ := ParseSource("debian:linux-source-6.12")
		if _, _, err := src.resolve(ctx); err != nil {
			t.Skip(err)
		}
		cache := tinyTmpfs(t)
		frag := writeFile(t, t.TempDir(), "base.config", "CONFIG_64BIT=y\n")
		_, err := (&Builder{CacheDir: cache}).Build(ctx, Spec{Name: "v", Source: src, Fragments: []string{frag}})
		if err == nil || !strings.Contains(err.Error(), "out of disk space in the cache "+cache) || !strings.Contains(err.Error(), "unpacking debian:linux-source-6.12 needs about") {
			t.Fatalf("err = %v", err)
		}
		if !errors.Is(err, syscall.ENOSPC) {
			t.Errorf("errors.Is(err, ENOSPC) = false")
		}
		assertNothingBuilt(t, cache)
		if s := cacheEntries(t, cache, "src"); len(s) > 0 {
			t.Errorf("src/ = %v", s)
		}
	})
	t.Run("fake kernel", func(t *testing.T) {
		cache := tinyTmpfs(t)
		_, err := (&Builder{CacheDir: cache, Jobs: 1}).Build(ctx, fakeSpec(t))
		if err == nil || !strings.Contains(err.Error(), "out of disk space") {
			t.Fatalf("err = %v", err)
		}
		t.Logf("the error reads:\n%v", err)
		assertNothingBuilt(t, cache)
	})
	t.Run("a write that fails", func(t *testing.T) {
		cache := tinyTmpfs(t)
		logPath := filepath.Join(t.TempDir(), "log")
		err := runLogged(ctx, cache, logPath, nil, "dd", "if=/dev/zero", "of=big", "bs=1M", "count=4")
		if err == nil {
			t.Fatal("dd filled 4 MiB into 1 MiB")
		}
		err = (&Builder{CacheDir: cache}).explainSpace(Spec{Name: "v"}, err)
		msg := err.Error()
		if !strings.HasPrefix(msg, "variant v: out of disk space in the cache "+cache) || !strings.Contains(msg, "No space left on device") || strings.Count(msg, "\n") > 0 {
			t.Fatalf("want one paragraph naming the cache and the failure, got:\n%s", msg)
		}
	})
}
