package harness

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// gitRepo makes a one-commit git repository.
func gitRepo(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "Makefile"), []byte("all:\n"), 0o644)
	for _, args := range [][]string{{"init", "-q"}, {"add", "."}, {"-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"}} {
		if out, err := exec.Command("git", append([]string{"-C", dir}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	return dir
}

// The attack from issue 13, through --input: the file named by --output
// stays untouched and the error names the flag.
func TestInputFlagGitOptionRefused(t *testing.T) {
	repo := gitRepo(t)
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	os.WriteFile(victim, []byte("precious\n"), 0o644)
	flag := "series=git:" + repo + "@--output=" + dir + "/../" + filepath.Base(dir) + "/victim"
	_, err := ParseInputFlags([]string{flag})
	if err == nil || !strings.Contains(err.Error(), "--input series") || !strings.Contains(err.Error(), "starts with '-'") {
		t.Fatalf("want an error naming --input series, got %v", err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious\n" {
		t.Fatalf("victim changed to %q", b)
	}
}

const inputCase = `name: t
inputs:
  series: {description: the series}
kernel:
  source: debian:linux-source-6.12
filesystem:
  mount_options: nodelalloc
  journal_data: true
workload:
  mmap_writers: 1
variants:
  a:
    patches: [input:series]
`

// A revision with '-' in a case file, a range end, and case.local.yaml: each
// error names file:line and the field.
func TestCaseGitRevisionRefused(t *testing.T) {
	repo := gitRepo(t)
	p := writeCase(t, strings.Replace(goodCase, "[fix.patch]", "[\"git:"+repo+"@-x..HEAD\"]", 1))
	_, err := LoadCase(p)
	if err == nil || !strings.Contains(err.Error(), p+":11: variants.a.patches") || !strings.Contains(err.Error(), "starts with '-'") {
		t.Errorf("case patch: got %v", err)
	}
	p = writeCase(t, strings.Replace(goodCase, "[fix.patch]", "[\"git:"+repo+"@HEAD..--x\"]", 1))
	if _, err := LoadCase(p); err == nil || !strings.Contains(err.Error(), "range end") || !strings.Contains(err.Error(), p+":11:") {
		t.Errorf("range end: got %v", err)
	}
	p = writeCase(t, strings.Replace(goodCase, "debian:linux-source-6.12", "git:"+repo+"@--output=/tmp/x", 1))
	if _, err := LoadCase(p); err == nil || !strings.Contains(err.Error(), p+":3: kernel.source") {
		t.Errorf("kernel.source: got %v", err)
	}
	p = writeCase(t, inputCase)
	local := LocalFile(p)
	os.WriteFile(local, []byte("inputs:\n  series: git:"+repo+"@HEAD..--output=/tmp/x\n"), 0o644)
	if _, err := LoadCase(p); err == nil || !strings.Contains(err.Error(), local+":2: inputs.series") || !strings.Contains(err.Error(), "starts with '-'") {
		t.Errorf("local file: got %v", err)
	}
}

// within fails the test unless f returns within a second.
func within(t *testing.T, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(time.Second):
		t.Fatal("did not return within a second")
		return nil
	}
}

// A case.yaml that is a FIFO, a symlink to /dev/zero or too big: a prompt
// error naming the file, never a hang or an unbounded read.
func TestCaseFileHostileKinds(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "case.yaml")
	if err := syscall.Mkfifo(p, 0o644); err != nil {
		t.Skip(err)
	}
	err := within(t, func() error { _, err := LoadCase(dir); return err })
	if err == nil || !strings.Contains(err.Error(), p+": not a regular file (a FIFO)") {
		t.Errorf("FIFO: %v", err)
	}
	os.Remove(p)
	os.Symlink("/dev/zero", p)
	err = within(t, func() error { _, err := LoadCase(dir); return err })
	if err == nil || !strings.Contains(err.Error(), "a symlink to /dev/zero") {
		t.Errorf("/dev/zero: %v", err)
	}
	os.Remove(p)
	os.WriteFile(p, []byte(goodCase+"#"+strings.Repeat("x", 1<<20)+"\n"), 0o644)
	err = within(t, func() error { _, err := LoadCase(dir); return err })
	if err == nil || !strings.Contains(err.Error(), p+": larger than 1 MiB") {
		t.Errorf("oversize: %v", err)
	}
	// The local file too.
	p = writeCase(t, inputCase)
	if err := syscall.Mkfifo(LocalFile(p), 0o644); err != nil {
		t.Fatal(err)
	}
	err = within(t, func() error { _, err := LoadCase(p); return err })
	if err == nil || !strings.Contains(err.Error(), "a FIFO") {
		t.Errorf("local FIFO: %v", err)
	}
}
