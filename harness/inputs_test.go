package harness

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// seriesMbox writes an mbox standing in for a posted series: a cover
// letter and n patches with the given subjects (index -> subject), others
// named "ext4: patch N". The diffs are placeholders: these tests check stack
// edits, not whether the series applies.
func seriesMbox(t *testing.T, n int, subjects map[int]string) string {
	t.Helper()
	var b strings.Builder
	mail := func(i int, subject, diff string) {
		fmt.Fprintf(&b, "From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001\n")
		fmt.Fprintf(&b, "From: Test <test@example.com>\nSubject: [PATCH %02d/%d] %s\n\nbody\n", i, n, subject)
		b.WriteString(diff)
		b.WriteString("\n")
	}
	mail(0, "cover letter", "")
	for i := 1; i <= n; i++ {
		s, ok := subjects[i]
		if !ok {
			s = fmt.Sprintf("ext4: patch %d", i)
		}
		mail(i, s, fmt.Sprintf("---\n--- a/f%d\n+++ b/f%d\n@@ -0,0 +1 @@\n+%d\n", i, i, i))
	}
	p := filepath.Join(t.TempDir(), "series.mbx")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestIomapCaseStacks checks the shipped buffered-iomap cases against
// stand-ins for the two postings: the October 2024 one (22/27 refuses) and
// RFC v4 (29/34 falls back). Each variant must be the series with exactly
// the one patch swapped for ours, in its place.
func TestIomapCaseStacks(t *testing.T) {
	// edit is a variant that is the series with patch #at swapped for ours,
	// then the extra patches of ours appended.
	type edit struct {
		variant, ours string
		extra         []string
	}
	for _, tc := range []struct {
		file, swapped string
		n, at         int
		asPosted      string // the variant that is the series unchanged
		edits         []edit
	}{
		{"../cases/ext4-iomap-defrag/case.yaml", "ext4: disable online defrag when inode using iomap buffered I/O path", 27, 22, "eopnotsupp",
			[]edit{
				{"fallback-29of34", "0001-ext4-online-defrag-falls-back-as-rfc-v4-29-34.patch", nil},
				{"fallback-unmap-order0", "0001-ext4-fall-back-to-buffer-heads-for-online-defrag.patch", nil},
				{"probe", "0001-ext4-fall-back-to-buffer-heads-for-online-defrag.patch", []string{"0002-mm-readahead-probe-order-chosen-before-the-invalidate-lock.patch"}},
				{"fallback-reclamp", "0001-ext4-fall-back-to-buffer-heads-for-online-defrag.patch", []string{"0002-mm-readahead-choose-the-order-again-under-the-invalidate-lock.patch"}},
			}},
		{"../cases/ext4-iomap-defrag/rfc-v4.yaml", "ext4: fall back to buffer_head path for defrag", 34, 29, "fallback",
			[]edit{{"eopnotsupp", "0001-ext4-refuse-online-defrag-on-buffered-iomap-inodes.patch", nil}}},
	} {
		t.Run(filepath.Base(tc.file), func(t *testing.T) {
			mbox := seriesMbox(t, tc.n, map[int]string{tc.at: tc.swapped})
			c, err := LoadCaseWith(tc.file, map[string]string{"series": mbox, "tree": "debian:linux-source-6.12"})
			if err != nil {
				t.Fatal(err)
			}
			if !c.Filesystem.CheckBufferedIomap || !strings.Contains(c.Filesystem.MountOptions, "buffered_iomap") {
				t.Errorf("filesystem = %+v: want -o buffered_iomap and the iomap check", c.Filesystem)
			}
			if c.Baseline != "eopnotsupp" {
				t.Errorf("baseline = %q", c.Baseline)
			}
			posted, err := c.PatchStack(tc.asPosted)
			if err != nil {
				t.Fatal(err)
			}
			if len(posted) != tc.n || posted[tc.at-1] != fmt.Sprintf("%s#%d", mbox, tc.at) {
				t.Fatalf("%s: %d patches, #%d = %q; want the %d patches of the mbox", tc.asPosted, len(posted), tc.at, posted[min(tc.at, len(posted))-1], tc.n)
			}
			for _, e := range tc.edits {
				edited, err := c.PatchStack(e.variant)
				if err != nil {
					t.Fatal(err)
				}
				want := append([]string{}, posted...)
				want[tc.at-1] = c.Path(e.ours)
				for _, x := range e.extra {
					want = append(want, c.Path(x))
				}
				if !slices.Equal(edited, want) {
					t.Errorf("%s: stack %v, want %v", e.variant, edited, want)
				}
			}
			specs, err := c.KernelSpecs(nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(specs) != len(tc.edits)+1 || specs[0].Source.Kind != "debian" {
				t.Errorf("specs = %+v: want %d, from the tree input", specs, len(tc.edits)+1)
			}
		})
	}
}

// TestIomapCaseNeedsInputs: without the series the case still loads (plan,
// validation of the rest) but building names the missing input, the flag
// and the local file.
func TestIomapCaseNeedsInputs(t *testing.T) {
	c, err := LoadCase("../cases/ext4-iomap-defrag")
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.KernelSpecs(nil)
	if err == nil {
		t.Fatal("KernelSpecs without inputs: no error")
	}
	for _, want := range []string{"case.yaml:", "kernel.source", `input "tree" is not set`, "--input tree=", "case.local.yaml", "e.g. git:"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	c, err = LoadCaseWith("../cases/ext4-iomap-defrag", map[string]string{"tree": "debian:linux-source-6.12"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.PatchStack("fallback-29of34")
	if err == nil || !strings.Contains(err.Error(), "variants.eopnotsupp.patches.0") || !strings.Contains(err.Error(), `input "series" is not set`) {
		t.Errorf("fallback stack without the series: %v", err)
	}
}

func TestInputsFromLocalFileAndFlags(t *testing.T) {
	dir := t.TempDir()
	caseYAML := `name: in
inputs:
  tree: {description: a tree}
  series: {description: a series}
kernel: {source: input:tree}
workload: {mmap_writers: 1}
variants:
  a: {patches: [input:series]}
`
	file := filepath.Join(dir, "case.yaml")
	if err := os.WriteFile(file, []byte(caseYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "mail"), 0o755); err != nil {
		t.Fatal(err)
	}
	mbox := seriesMbox(t, 3, nil)
	data, _ := os.ReadFile(mbox)
	if err := os.WriteFile(filepath.Join(dir, "mail", "s.mbx"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	local := filepath.Join(dir, "case.local.yaml")
	// Relative paths in the local file are from its folder.
	if err := os.WriteFile(local, []byte("inputs:\n  tree: git:linux@v6.12-rc4\n  series: mail/s.mbx\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := LoadCase(file)
	if err != nil {
		t.Fatal(err)
	}
	stack, err := c.PatchStack("a")
	if err != nil {
		t.Fatal(err)
	}
	if len(stack) != 3 || !strings.HasPrefix(stack[0], filepath.Join(dir, "mail", "s.mbx")) {
		t.Errorf("stack from the local file = %v", stack)
	}
	specs, err := c.KernelSpecs(nil)
	if err != nil {
		t.Fatal(err)
	}
	if src := specs[0].Source; src.Kind != "git" || src.Name != filepath.Join(dir, "linux") || src.Ref != "v6.12-rc4" {
		t.Errorf("source = %+v, want git at %s, ref v6.12-rc4", src, filepath.Join(dir, "linux"))
	}
	if got := c.InputValues()["tree"]; got != "git:"+filepath.Join(dir, "linux")+"@v6.12-rc4" {
		t.Errorf("recorded tree = %q", got)
	}

	// A flag overrides the local file.
	c, err = LoadCaseWith(file, map[string]string{"series": mbox})
	if err != nil {
		t.Fatal(err)
	}
	if stack, _ := c.PatchStack("a"); len(stack) != 3 || !strings.HasPrefix(stack[0], mbox) {
		t.Errorf("stack with --input series = %v, want the flag's mbox", stack)
	}

	// An unknown name in the local file is an error with its line.
	if err := os.WriteFile(local, []byte("inputs:\n  tree: dir:/x\n  seris: mail/s.mbx\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = LoadCase(file)
	if err == nil || !strings.Contains(err.Error(), "case.local.yaml:3: inputs.seris") || !strings.Contains(err.Error(), "series, tree") {
		t.Errorf("unknown input in the local file: %v", err)
	}
	if err := os.WriteFile(local, []byte("input:\n  tree: dir:/x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err = LoadCase(file); err == nil || !strings.Contains(err.Error(), "case.local.yaml") {
		t.Errorf("misspelt top-level key in the local file: %v", err)
	}
	// An empty local file sets nothing.
	if err := os.WriteFile(local, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err = LoadCase(file); err != nil {
		t.Errorf("empty local file: %v", err)
	}
	_, err = LoadCaseWith(file, map[string]string{"nope": "x"})
	if err == nil || !strings.Contains(err.Error(), "--input nope") {
		t.Errorf("unknown --input: %v", err)
	}
}

func TestUndeclaredInputIsAnError(t *testing.T) {
	_, err := ParseCase("/tmp/x/case.yaml", []byte(`name: x
kernel: {source: input:tree}
variants:
  a: {patches: [input:series]}
`))
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"case.yaml:2: kernel.source: input \"tree\" is not declared", "case.yaml:4: variants.a.patches.0: input \"series\" is not declared"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}

func TestParseInputFlags(t *testing.T) {
	home, err := os.UserHomeDir()
	if err != nil {
		t.Skip("no home directory")
	}
	got, err := ParseInputFlags([]string{"tree=git:~/linux@v6.12-rc4", "series=/abs/s.mbx", "deb=debian:linux-source-6.12"})
	if err != nil {
		t.Fatal(err)
	}
	if got["tree"] != "git:"+filepath.Join(home, "linux")+"@v6.12-rc4" || got["series"] != "/abs/s.mbx" || got["deb"] != "debian:linux-source-6.12" {
		t.Errorf("got %v", got)
	}
	for _, bad := range [][]string{{"tree"}, {"=x"}, {"tree="}, {"a=1", "a=2"}, {"t=git:nowhere"}} {
		if _, err := ParseInputFlags(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// A series kept as a branch is an input too: git:REPO@BASE..TIP, whose
// commits a variant replaces by subject like mails of an mbox.
func TestSeriesInputFromGitRange(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	repo := t.TempDir()
	git := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-C", repo, "-c", "user.name=t", "-c", "user.email=t@t"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	git("init", "-q")
	for i, subject := range []string{"base", "ext4: one", "ext4: disable online defrag when inode using iomap buffered I/O path", "ext4: three"} {
		if err := os.WriteFile(filepath.Join(repo, fmt.Sprintf("f%d", i)), []byte(subject+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		git("add", ".")
		git("commit", "-qm", subject)
		if i == 0 {
			git("tag", "base")
		}
	}
	c, err := LoadCaseWith("../cases/ext4-iomap-defrag", map[string]string{
		"tree": "git:" + repo + "@base", "series": "git:" + repo + "@base..HEAD"})
	if err != nil {
		t.Fatal(err)
	}
	stack, err := c.PatchStack("fallback-unmap-order0")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"git:" + repo + "@base..HEAD#1", c.Path("0001-ext4-fall-back-to-buffer-heads-for-online-defrag.patch"), "git:" + repo + "@base..HEAD#3"}
	if strings.Join(stack, " ") != strings.Join(want, " ") {
		t.Errorf("fallback stack %v, want %v", stack, want)
	}
}

// A missing input stops a run before any work: no results folder, no guest
// binary, no image or kernel in the cache (a cold cache makes these minutes).
func TestRunCaseChecksInputsFirst(t *testing.T) {
	c, err := LoadCaseWith("../cases/ext4-iomap-defrag", map[string]string{"tree": "debian:linux-source-6.12"})
	if err != nil {
		t.Fatal(err)
	}
	cache, results := t.TempDir(), filepath.Join(t.TempDir(), "results")
	_, err = RunCase(context.Background(), c, Options{CacheDir: cache, ResultsDir: results, Runs: 1})
	if err == nil || !strings.Contains(err.Error(), `input "series" is not set`) {
		t.Fatalf("err = %v, want the missing series input", err)
	}
	if _, err := os.Stat(results); !os.IsNotExist(err) {
		t.Errorf("results folder made before the inputs were checked: %v", err)
	}
	if ents, _ := os.ReadDir(cache); len(ents) != 0 {
		t.Errorf("cache touched before the inputs were checked: %v", ents)
	}
}

// --input series=b4:... goes through b4 am; a bad value names the flag.
func TestB4InputFlag(t *testing.T) {
	_, err := ParseInputFlags([]string{"series=b4:not-a-msgid"})
	if err == nil || !strings.Contains(err.Error(), "--input series: b4:not-a-msgid:") || !strings.Contains(err.Error(), "is not a message-id") {
		t.Errorf("bad b4 input: %v", err)
	}
	_, err = ParseInputFlags([]string{"series=lore:<-x@y>"})
	if err == nil || !strings.Contains(err.Error(), "--input series: lore:<-x@y>:") {
		t.Errorf("bad lore input: %v", err)
	}
}
