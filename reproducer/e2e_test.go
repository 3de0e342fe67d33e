package reproducer_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"patchbay/harness"
	"patchbay/images"
	"patchbay/kernel"
	"patchbay/record"
	"patchbay/report"
	"patchbay/reproducer"
	"patchbay/rundir"
)

type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestReproducerWithoutPatchbay: a lost-dirty run of the seeded bugs fails
// in patchbay; its reproducer, booted in a plain QEMU (no vm/, no SSH),
// fails the same way (bad blocks); the stock kernel's reproducer passes.
func TestReproducerWithoutPatchbay(t *testing.T) {
	if os.Getenv("PATCHBAY_E2E") == "" {
		t.Skip("set PATCHBAY_E2E=1: builds kernels and boots QEMU")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	cache := harness.DefaultCacheDir()
	c, err := harness.LoadCase("../harness/testdata/seeded-bugs/case.yaml")
	if err != nil {
		t.Fatal(err)
	}
	results := t.TempDir()
	sum, err := harness.RunCase(ctx, c, harness.Options{
		CacheDir: cache, ResultsDir: results, Runs: 1, Seed: 100,
		Variants: []string{"lost-dirty"}, Accel: "auto", Progress: testLog{t},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := report.Write(sum.Dir, sum); err != nil {
		t.Fatal(err)
	}
	rec := sum.Variants[0].Runs[0]
	t.Logf("patchbay: lost-dirty#0 seed %d: %s %v", rec.Seed, rec.Outcome, rec.Reasons)
	if rec.Outcome != record.Fail || !strings.Contains(strings.Join(rec.Reasons, "\n"), "bad blocks") {
		t.Fatalf("the seeded lost-dirty run did not fail with bad blocks: %s %v", rec.Outcome, rec.Reasons)
	}
	run, err := rundir.Load(filepath.Join(sum.Dir, rec.Dir), "")
	if err != nil {
		t.Fatal(err)
	}
	bin, err := harness.EnsureGuest(ctx, cache, "")
	if err != nil {
		t.Fatal(err)
	}
	img, err := (&images.Builder{CacheDir: cache}).Ensure(ctx, c.ImageRecipe())
	if err != nil {
		t.Fatal(err)
	}

	failDir := filepath.Join(t.TempDir(), "lost-dirty")
	if err := reproducer.Write(reproducer.FromRun(run, bin), failDir); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"run.sh", "vm-init.sh", "pbguest", "config", "patches.txt", "README.md", "patches/01-lost-dirty.patch"} {
		if _, err := os.Stat(filepath.Join(failDir, f)); err != nil {
			t.Errorf("reproducer lacks %s", f)
		}
	}
	patches, _ := os.ReadFile(filepath.Join(failDir, "patches.txt"))
	if !regexp.MustCompile(`(?m)^1 [0-9a-f]{64} patches/01-lost-dirty.patch `).Match(patches) {
		t.Errorf("patches.txt:\n%s", patches)
	}
	start := time.Now()
	out := bootReproducer(ctx, t, run.Kernel.BzImage, img.Root, failDir, c)
	t.Logf("lost-dirty reproducer: %s in plain QEMU", time.Since(start).Round(time.Second))
	if !strings.Contains(out, "patchbay-repro: FAIL") || !regexp.MustCompile(`FAIL: verify (live|dropcache|remount): [1-9][0-9]* bad blocks`).MatchString(out) {
		t.Fatalf("lost-dirty reproducer did not fail with bad blocks:\n%s", tail(out))
	}

	// Stock: the same seed and workload on the stock kernel must pass.
	kb := &kernel.Builder{CacheDir: cache, Progress: testLog{t}}
	specs, err := c.KernelSpecs([]string{"stock"})
	if err != nil {
		t.Fatal(err)
	}
	k, err := kb.Build(ctx, specs[0])
	if err != nil {
		t.Fatal(err)
	}
	stockDir := filepath.Join(t.TempDir(), "stock")
	in := reproducer.Input{Case: run.Case, Variant: "stock", Seed: rec.Seed, Kernel: k, GuestBin: bin}
	if err := reproducer.Write(in, stockDir); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	out = bootReproducer(ctx, t, k.BzImage, img.Root, stockDir, c)
	t.Logf("stock reproducer: %s in plain QEMU", time.Since(start).Round(time.Second))
	if !strings.Contains(out, "patchbay-repro: PASS") || strings.Contains(out, "FAIL") {
		t.Fatalf("stock reproducer did not pass:\n%s", tail(out))
	}
}

// bootReproducer boots kernel with the root image (snapshot), the
// reproducer directory as an ext4 disk made with mkfs.ext4 -d, and a fresh
// scratch disk, and returns the serial console once QEMU exits.
func bootReproducer(ctx context.Context, t *testing.T, bzImage, root, dir string, c *harness.Case) string {
	t.Helper()
	work := t.TempDir()
	disk := filepath.Join(work, "repro.img")
	if out, err := exec.CommandContext(ctx, "mkfs.ext4", "-q", "-F", "-d", dir, disk, "64M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4 -d: %v\n%s", err, out)
	}
	scratch := filepath.Join(work, "scratch.raw")
	f, err := os.Create(scratch)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(int64(c.VM.ScratchMB) << 20)
	f.Close()
	console := filepath.Join(work, "console.log")
	// As the reproducer's README says: its vm-init.sh as init, via sh.
	cmdline := "console=ttyS0,115200 root=/dev/vda rw rootfstype=ext4 pci=noacpi panic=-1 printk.devkmsg=on " +
		c.Kernel.Cmdline + " " + reproducer.InitArgs
	qctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(qctx, "qemu-system-x86_64",
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-machine", "pc", "-accel", "tcg", "-cpu", "qemu64",
		"-smp", fmt.Sprint(c.VM.CPUs), "-m", fmt.Sprint(c.VM.MemoryMB),
		"-kernel", bzImage, "-append", cmdline,
		"-drive", "file="+root+",if=virtio,format=raw,snapshot=on",
		"-drive", "file="+disk+",if=virtio,format=raw,readonly=on",
		"-drive", "file="+scratch+",if=virtio,format=raw,cache=unsafe",
		"-device", "virtio-rng-pci",
		"-serial", "file:"+console)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	data, _ := os.ReadFile(console)
	if err != nil {
		t.Fatalf("qemu: %v %s\nconsole:\n%s", err, stderr.String(), tail(string(data)))
	}
	s := string(data)
	for _, line := range strings.Split(s, "\n") {
		if strings.HasPrefix(line, "FAIL:") || strings.HasPrefix(line, "patchbay-repro:") || strings.HasPrefix(line, "vm-init:") {
			t.Log(strings.TrimSpace(line))
		}
	}
	if !strings.Contains(s, "vm-init: run.sh exited") {
		t.Fatalf("run.sh did not finish:\n%s", tail(s))
	}
	return s
}

func tail(s string) string {
	lines := strings.Split(s, "\n")
	if len(lines) > 80 {
		lines = lines[len(lines)-80:]
	}
	return strings.Join(lines, "\n")
}
