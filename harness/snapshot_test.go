package harness

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"patchbay/images"
	"patchbay/kernel"
)

func TestSnapshotKey(t *testing.T) {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("no QEMU")
	}
	c, err := LoadCase("../cases/ext4-journal-defrag")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "pbguest")
	os.WriteFile(bin, []byte("guest one"), 0o755)
	s := NewSnapshots(t.TempDir(), false)
	k := &kernel.Artifact{Key: "k1"}
	img := &images.Image{Key: "i1"}
	key := func() string {
		t.Helper()
		snap, err := s.key(c, k, img, bin, "tcg")
		if err != nil {
			t.Fatal(err)
		}
		return snap.Key
	}
	base := key()
	if again := key(); again != base {
		t.Fatalf("same inputs, keys %s and %s", base, again)
	}
	seen := map[string]string{base: "base"}
	change := func(what string, do, undo func()) {
		do()
		got := key()
		undo()
		if prev, dup := seen[got]; dup {
			t.Errorf("changing %s gives key %s, as %s did", what, got, prev)
		}
		seen[got] = what
	}
	change("kernel", func() { k.Key = "k2" }, func() { k.Key = "k1" })
	change("image", func() { img.Key = "i2" }, func() { img.Key = "i1" })
	change("cmdline", func() { c.Kernel.Cmdline += " x" }, func() { c.Kernel.Cmdline = strings.TrimSuffix(c.Kernel.Cmdline, " x") })
	change("memory", func() { c.VM.MemoryMB++ }, func() { c.VM.MemoryMB-- })
	change("cpus", func() { c.VM.CPUs++ }, func() { c.VM.CPUs-- })
	change("scratch", func() { c.VM.ScratchMB++ }, func() { c.VM.ScratchMB-- })
	change("guest binary", func() { os.WriteFile(bin, []byte("guest two"), 0o755) }, func() { os.WriteFile(bin, []byte("guest one"), 0o755) })
	if key() != base {
		t.Errorf("back to the same inputs, a different key")
	}
}

func TestSnapshotsRelativeDirBootsCold(t *testing.T) {
	s := NewSnapshots("relative-cache", false)
	snap, mk, why := s.get(snapshot{Key: "abc"}, &images.Image{})
	if snap != nil || mk != nil || !strings.Contains(why, "not absolute") {
		t.Fatalf("get with a relative dir: %v %v %q", snap, mk, why)
	}
	if _, err := os.Stat("relative-cache"); err == nil {
		os.RemoveAll("relative-cache")
		t.Fatalf("created a directory relative to the working directory")
	}
}

func TestSplitBatch(t *testing.T) {
	m := "@@patchbay-0011"
	out := []byte("one\n\n" + m + " 0 0\ntwo" + "\n" + m + " 1 0\n" + "partial\n" + "\n" + m + " 2 3\n")
	outs, err := splitBatch(out, m, 4)
	if err != nil {
		t.Fatal(err)
	}
	if len(outs) != 2 || string(outs[0]) != "one\n" || string(outs[1]) != "two" {
		t.Fatalf("outs %q, want [one\\n two]", outs)
	}
	// A marker that looks like ours but for another index is output.
	outs, _ = splitBatch([]byte("x "+m+" 1 0\n\n"+m+" 0 0\n"), m, 1)
	if len(outs) != 1 || string(outs[0]) != "x "+m+" 1 0\n" {
		t.Fatalf("outs %q", outs)
	}
	if _, err := splitBatch([]byte("\n"+m+" 0 0"), m, 1); err == nil {
		t.Fatalf("a truncated marker is not an error")
	}
}
