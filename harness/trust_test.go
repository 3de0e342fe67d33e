package harness

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"patchbay/casespec"
	"patchbay/workload/guestcmd"
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

// mkfs and mount_options are validated at load (file:line: field) and
// quoted where they reach the guest's shell.
func TestFilesystemFieldsReachNoShell(t *testing.T) {
	for _, tc := range []struct{ from, to, want string }{
		{"mount_options: nodelalloc", "mount_options: \"nodelalloc;reboot\"", ":5: filesystem.mount_options"},
		{"mount_options: nodelalloc", "mount_options: \"nodelalloc,$(reboot)\"", ":5: filesystem.mount_options"},
		{"mount_options: nodelalloc", "mount_options: nodelalloc\n  mkfs: \"mkfs.ext4 -F; reboot\"", ":6: filesystem.mkfs"},
		{"mount_options: nodelalloc", "mount_options: nodelalloc\n  mkfs: \"sh -c reboot\"", ":6: filesystem.mkfs"},
	} {
		p := writeCase(t, strings.Replace(goodCase, tc.from, tc.to, 1))
		_, err := LoadCase(p)
		if err == nil || !strings.Contains(err.Error(), p+tc.want) {
			t.Errorf("%s: got %v, want %s%s", tc.to, err, p, tc.want)
		}
	}
	good := strings.Replace(goodCase, "mount_options: nodelalloc", "mount_options: nodelalloc,data=ordered,commit=5\n  mkfs: mkfs.ext4 -F -q -O ^has_journal,extent -b 4096", 1)
	if _, err := LoadCase(writeCase(t, good)); err != nil {
		t.Errorf("plain mkfs and options refused: %v", err)
	}

	// Whatever a field holds, the shell sees it as one word: a real sh
	// prints it back unchanged and runs nothing.
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	marker := filepath.Join(t.TempDir(), "ran")
	for _, s := range []string{"a;touch " + marker, "$(touch " + marker + ")", "`touch " + marker + "`", "it's", "a b\tc\n"} {
		out, err := exec.Command("sh", "-c", "printf %s "+guestcmd.ShellQuote(s)).Output()
		if err != nil || string(out) != s {
			t.Errorf("sh saw %q as %q (%v)", s, out, err)
		}
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("a quoted field ran a command")
	}
	// The runner's command lines (guestcmd.Build) quote what load-time
	// validation would have refused anyway.
	c := &Case{Filesystem: casespec.FilesystemSpec{Mkfs: "mkfs.ext4 -F;touch " + marker, MountOptions: "x;touch " + marker}}
	gc := guestcmd.Build(c.Workload, c.Filesystem, 1, vmPaths)
	if mkfs, mount := guestcmd.ShellJoin(gc.Mkfs), guestcmd.ShellJoin(gc.Mount); !strings.Contains(mkfs, "'-F;touch' "+guestcmd.ShellQuote(marker)) ||
		!strings.Contains(mount, guestcmd.ShellQuote(guestcmd.MountOpts("x;touch "+marker))) {
		t.Errorf("guest commands not quoted: %s / %s", mkfs, mount)
	}
}

// Explicit zeros, overflowing sizes and durations and unsafe names: each an
// error naming file:line: field.
func TestCaseValueValidation(t *testing.T) {
	for _, tc := range []struct{ from, to, want string }{
		{"workload:\n", "vm:\n  cpus: 0\nworkload:\n", ":8: vm.cpus: an explicit 0"},
		{"workload:\n", "vm:\n  memory_mb: 0\nworkload:\n", ":8: vm.memory_mb: an explicit 0"},
		{"  mmap_writers: 1\n", "  mmap_writers: 1\n  duration: 0s\n", ":9: workload.duration: an explicit 0"},
		{"  mmap_writers: 1\n", "  mmap_writers: 1\n  blocks: 0\n", ":9: workload.blocks: an explicit 0"},
		{"  mmap_writers: 1\n", "  mmap_writers: 1\n  duration: 9999999h\n", ":9: workload.duration: \"9999999h\" is out of range"},
		{"  mmap_writers: 1\n", "  mmap_writers: 1\n  duration: 200h\n", ":9: workload.duration: must be positive and at most 168h0m0s"},
		{"workload:\n", "vm:\n  scratch_mb: 99999999999\nworkload:\n", ":8: vm.scratch_mb: must be 64..1048576"},
		{"workload:\n", "vm:\n  boot_timeout: -1s\nworkload:\n", ":8: vm.boot_timeout: must be positive"},
		{"  mmap_writers: 1\n", "  mmap_writers: 1\n  blocks: 99999999999\n", ":9: workload.blocks: must be 1.."},
		{"name: t\n", "name: ../../etc\n", ":1: name: \"../../etc\""},
		{"name: t\n", "name: a/b\n", ":1: name: \"a/b\""},
		{"name: t\n", "name: x..y\n", ":1: name: \"x..y\""},
		{"name: t\n", "name: .hidden\n", ":1: name: \".hidden\""},
	} {
		p := writeCase(t, strings.Replace(goodCase, tc.from, tc.to, 1))
		_, err := LoadCase(p)
		if err == nil || !strings.Contains(err.Error(), p+tc.want) {
			t.Errorf("%q: got %v, want %s%s", tc.to, err, p, tc.want)
		}
	}
	// Leaving a field out, or writing it empty, still means the default.
	p := writeCase(t, strings.Replace(goodCase, "workload:\n", "vm:\n  cpus:\nworkload:\n", 1))
	c, err := LoadCase(p)
	if err != nil || c.VM.CPUs != 2 {
		t.Fatalf("cpus: (no value): %v, cpus %d", err, c.VM.CPUs)
	}
}
