package harness

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"patchbay/images"
	"patchbay/kernel"
	"patchbay/triage"
	"patchbay/triage/symbolize"
	"patchbay/vm"
)

// The capture tests boot real kernels, make them report one bug each, and
// save the console under triage/testdata/real/raw/. Those captures become
// triage fixtures once a person has read them and written their TITLE/KIND
// headers (see triage/testdata/real/README.md). Run with PATCHBAY_CAPTURE=1,
// one test at a time: each boots one VM per capture, one after another.

const captureDir = "../triage/testdata/real/raw"

// captureCmdline: short detector timeouts so hangs show up within the
// capture window.
const captureCmdline = "sysctl.kernel.hung_task_timeout_secs=5 watchdog_thresh=3"

// captureEnv is what every capture needs: the case, a kernel per patch
// set, the guest image.
type captureEnv struct {
	ctx     context.Context
	c       *Case
	img     *images.Image
	kernels map[string]*kernel.Artifact // by the patch file list, "" for stock
}

func newCaptureEnv(t *testing.T) *captureEnv {
	t.Helper()
	if os.Getenv("PATCHBAY_CAPTURE") == "" {
		t.Skip("set PATCHBAY_CAPTURE=1 to (re)capture real console logs for triage fixtures")
	}
	c, err := LoadCase("../cases/ext4-journal-defrag")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	img, err := (&images.Builder{CacheDir: DefaultCacheDir()}).Ensure(ctx, images.DefaultRecipe())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(captureDir, 0o755); err != nil {
		t.Fatal(err)
	}
	return &captureEnv{ctx: ctx, c: c, img: img, kernels: map[string]*kernel.Artifact{}}
}

// kernel builds (or finds cached) the case's base kernel with patches on top.
func (e *captureEnv) kernel(t *testing.T, name string, patches ...string) *kernel.Artifact {
	t.Helper()
	return e.kernelWith(t, name, nil, patches...)
}

// kernelWith is kernel with more kconfig fragments (paths relative to the
// case directory) after the case's own: a separate base tree.
func (e *captureEnv) kernelWith(t *testing.T, name string, fragments []string, patches ...string) *kernel.Artifact {
	t.Helper()
	key := fmt.Sprint(fragments, patches)
	if k := e.kernels[key]; k != nil {
		return k
	}
	specs, err := e.c.KernelSpecs([]string{e.c.Baseline})
	if err != nil {
		t.Fatal(err)
	}
	spec := specs[0]
	spec.Name, spec.Patches = name, patches
	spec.Fragments = append([]string(nil), spec.Fragments...)
	for _, f := range fragments {
		spec.Fragments = append(spec.Fragments, e.c.Path(f))
	}
	k, err := (&kernel.Builder{CacheDir: DefaultCacheDir(), Progress: captureProgress{t}}).Build(e.ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	e.kernels[key] = k
	return k
}

type captureProgress struct{ t *testing.T }

func (w captureProgress) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// capture is one boot: run script over SSH, wait, save the console.
type capture struct {
	file    string // raw/<file>.txt
	cmdline string // on top of captureCmdline
	disk    bool   // attach a 256 MiB scratch disk as /dev/vdb
	script  string // guest shell; may never return (crash, reset)
	wait    time.Duration
	expect  string // the console must contain this
}

func (e *captureEnv) run(t *testing.T, k *kernel.Artifact, cp capture) {
	t.Helper()
	signer, err := e.img.Signer()
	if err != nil {
		t.Fatal(err)
	}
	hostKey, err := e.img.HostPublicKey()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := vm.Config{
		Kernel: k.BzImage, Cmdline: captureCmdline + " " + cp.cmdline, RootImage: e.img.Root,
		MemoryMB: 512, CPUs: 2, Accel: "tcg", WorkDir: dir, Signer: signer, HostKey: hostKey,
	}
	if cp.disk {
		disk := filepath.Join(dir, "scratch.raw")
		if err := os.WriteFile(disk, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(disk, 256<<20); err != nil {
			t.Fatal(err)
		}
		cfg.Disks = []string{disk}
	}
	m, err := vm.Start(e.ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	bctx, cancel := context.WithTimeout(e.ctx, 2*time.Minute)
	defer cancel()
	if err := m.WaitReady(bctx); err != nil {
		t.Fatal(err)
	}
	// The script may never return (a crash, a reset): do not wait for it
	// longer than cp.wait.
	done := make(chan struct{})
	var out []byte
	var runErr error
	go func() {
		defer close(done)
		sctx, cancel := context.WithTimeout(e.ctx, cp.wait)
		defer cancel()
		out, runErr = m.Output(sctx, cp.script)
	}()
	select {
	case <-done:
		t.Logf("%s: script: err %v, output:\n%s", cp.file, runErr, out)
	case <-m.Exited():
	case <-time.After(cp.wait):
	}
	time.Sleep(2 * time.Second)
	m.Close()
	<-done
	console := m.Console()
	if !bytes.Contains(console, []byte(cp.expect)) {
		t.Errorf("%s: console has no %q", cp.file, cp.expect)
	}
	if err := os.WriteFile(filepath.Join(captureDir, cp.file+".txt"), console, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %d bytes, QMP events %v, panicked %v", cp.file, len(console), m.Events(), m.Panicked())
}

// TestCaptureLKDTM boots the shipped case's stock kernel once per LKDTM crash
// type and provokes it through /sys/kernel/debug/provoke-crash/DIRECT.
func TestCaptureLKDTM(t *testing.T) {
	e := newCaptureEnv(t)
	k := e.kernel(t, "capture")
	types := []struct {
		name    string
		cmdline string
		wait    time.Duration
	}{
		{"WARNING", "", 5 * time.Second},
		{"BUG", "", 5 * time.Second},
		{"EXCEPTION", "", 5 * time.Second},
		{"CORRUPT_LIST_ADD", "", 5 * time.Second},
		{"HUNG_TASK", "", 25 * time.Second},
		{"SOFTLOCKUP", "", 25 * time.Second},
		{"EXCEPTION", "oops=panic", 5 * time.Second},
		{"UNSET_SMEP", "", 5 * time.Second},
		{"WRITE_RO", "", 5 * time.Second},
	}
	for _, tt := range types {
		name := tt.name
		if tt.cmdline != "" {
			name += "-panic"
		}
		t.Run(name, func(t *testing.T) {
			e.run(t, k, capture{
				file: "lkdtm-" + name, cmdline: tt.cmdline, wait: tt.wait, expect: "lkdtm",
				script: fmt.Sprintf("echo %s > /sys/kernel/debug/provoke-crash/DIRECT", tt.name),
			})
		})
	}
}

// provokePatch is the test-only kernel patch behind
// /sys/kernel/debug/patchbay-provoke.
const provokePatch = "../triage/testdata/patches/0001-patchbay-provoke.patch"

// TestCaptureProvoke boots the case's kernel plus the test-only provoke patch
// once per keyword (lockdep reports once per boot) and commits that bug.
func TestCaptureProvoke(t *testing.T) {
	e := newCaptureEnv(t)
	patch, err := filepath.Abs(provokePatch)
	if err != nil {
		t.Fatal(err)
	}
	k := e.kernel(t, "provoke", patch)
	keywords := []string{
		"lockdep-circular", "lockdep-recursive", "lockdep-bad-unlock", "lockdep-inconsistent",
		"lockdep-irq-unsafe-order", "lockdep-irq-inversion", "lockdep-held-freed",
		"lockdep-nonstatic-key", "lockdep-nest-not-held", "rcu-suspicious",
		"sleep-in-atomic", "sched-atomic", "held-lock-return", "bad-page", "gpf", "invalid-opcode",
	}
	const trigger = "echo %s > /sys/kernel/debug/patchbay-provoke"
	var caps []capture
	for _, kw := range keywords {
		caps = append(caps, capture{file: "provoke-" + kw, wait: 8 * time.Second,
			script: fmt.Sprintf(trigger, kw), expect: "patchbay-provoke: " + kw})
	}
	// lockdep reports once, then says so when asked for the held locks.
	caps = append(caps, capture{file: "provoke-lockdep-off-sysrq-d", wait: 10 * time.Second,
		script: fmt.Sprintf(trigger, "lockdep-bad-unlock") + "; sleep 1; echo d > /proc/sysrq-trigger",
		expect: "lockdep is turned off"})
	for _, cp := range caps {
		t.Run(cp.file, func(t *testing.T) { e.run(t, k, cp) })
	}
}

// TestCaptureStock boots the case's stock kernel for what needs no kernel
// patch: sysrq crash and reset, a reboot(2), ext4 errors and warnings on a
// scratch disk damaged with debugfs.
func TestCaptureStock(t *testing.T) {
	e := newCaptureEnv(t)
	k := e.kernel(t, "capture")
	const mkfs = "set -x; mkfs.ext4 -F -q /dev/vdb && mkdir -p /mnt/s && mount /dev/vdb /mnt/s && "
	// ext4_lookup finds a directory entry whose inode debugfs cleared.
	const clri = mkfs + "echo hello > /mnt/s/f && umount /mnt/s && debugfs -w -R 'clri /f' /dev/vdb && " +
		"mount -o errors=%s /dev/vdb /mnt/s && { cat /mnt/s/f; touch /mnt/s/g; sleep 1; grep vdb /proc/mounts; }"
	caps := []capture{
		{file: "sysrq-c-panic", cmdline: e.c.Kernel.Cmdline, wait: 8 * time.Second,
			script: "echo c > /proc/sysrq-trigger", expect: "sysrq triggered crash"},
		{file: "sysrq-b", wait: 8 * time.Second,
			script: "echo b > /proc/sysrq-trigger", expect: "sysrq: Resetting"},
		// reboot(2) with LINUX_REBOOT_CMD_RESTART: what reboot -f does.
		{file: "reboot-syscall", wait: 8 * time.Second,
			script: "sync; perl -e 'syscall(169, 0xfee1dead, 672274793, 0x1234567) or die qq($!)'",
			expect: "reboot: Restarting system"},
		{file: "ext4-error-continue", disk: true, wait: 60 * time.Second,
			script: fmt.Sprintf(clri, "continue"), expect: "EXT4-fs error"},
		{file: "ext4-error-remount-ro", disk: true, wait: 60 * time.Second,
			script: fmt.Sprintf(clri, "remount-ro"), expect: "Aborting journal"},
		// rmdir of an empty directory whose link count debugfs raised.
		{file: "ext4-warning-rmdir", disk: true, wait: 60 * time.Second,
			script: mkfs + "mkdir /mnt/s/d && umount /mnt/s && debugfs -w -R 'sif /d links_count 3' /dev/vdb && " +
				"mount /dev/vdb /mnt/s && rmdir /mnt/s/d && umount /mnt/s",
			expect: "EXT4-fs warning"},
	}
	for _, cp := range caps {
		t.Run(cp.file, func(t *testing.T) { e.run(t, k, cp) })
	}
}

// TestCaptureKASAN boots the case's kernel plus kconfig/kasan.config (KASAN
// generic inline, UBSAN bounds and shift, KFENCE) once per LKDTM type that
// those detectors catch: KASAN reports only its first bug per boot.
func TestCaptureKASAN(t *testing.T) {
	e := newCaptureEnv(t)
	k := e.kernelWith(t, "kasan", []string{"../../kconfig/kasan.config"})
	types := []struct {
		tool   string // the raw file is <tool>-lkdtm-<name>.txt
		name   string
		wait   time.Duration
		expect string
	}{
		{"kasan", "SLAB_LINEAR_OVERFLOW", 10 * time.Second, "BUG: KASAN: slab-out-of-bounds"},
		{"kasan", "READ_AFTER_FREE", 10 * time.Second, "BUG: KASAN: slab-use-after-free"},
		{"kasan", "WRITE_AFTER_FREE", 10 * time.Second, "BUG: KASAN: slab-use-after-free"},
		{"kasan", "SLAB_FREE_DOUBLE", 10 * time.Second, "BUG: KASAN: double-free"},
		// KASAN leaves KFENCE's objects alone; LKDTM allocates until it
		// gets one (up to 100 sample intervals, 10 s by default).
		{"kfence", "KFENCE_READ_AFTER_FREE", 25 * time.Second, "BUG: KFENCE: use-after-free"},
		{"ubsan", "ARRAY_BOUNDS", 10 * time.Second, "UBSAN: array-index-out-of-bounds"},
	}
	for _, tt := range types {
		t.Run(tt.name, func(t *testing.T) {
			e.run(t, k, capture{
				file: tt.tool + "-lkdtm-" + tt.name, wait: tt.wait, expect: tt.expect,
				script: fmt.Sprintf("echo %s > /sys/kernel/debug/provoke-crash/DIRECT", tt.name),
			})
		})
	}
	// What LKDTM has no type for: the test-only sanitize patch.
	patch, err := filepath.Abs(sanitizePatch)
	if err != nil {
		t.Fatal(err)
	}
	ks := e.kernelWith(t, "kasan-sanitize", []string{"../../kconfig/kasan.config"}, patch)
	for _, kw := range []string{"ubsan-shift", "kasan-global", "kasan-stack"} {
		t.Run(kw, func(t *testing.T) {
			e.run(t, ks, capture{
				file: "sanitize-" + kw, wait: 10 * time.Second, expect: "patchbay-sanitize: " + kw,
				script: fmt.Sprintf("echo %s > /sys/kernel/debug/patchbay-sanitize", kw),
			})
		})
	}
}

// sanitizePatch is the test-only kernel patch behind
// /sys/kernel/debug/patchbay-sanitize.
const sanitizePatch = "../triage/testdata/patches/0002-patchbay-sanitize.patch"

// TestCaptureSymbolized boots a kernel with kconfig/debuginfo.config,
// provokes an LKDTM WARNING and checks that triage/symbolize turns its
// frames into file:line of the real source (drivers/misc/lkdtm/bugs.c).
func TestCaptureSymbolized(t *testing.T) {
	e := newCaptureEnv(t)
	k := e.kernelWith(t, "debuginfo", []string{"../../kconfig/debuginfo.config"})
	e.run(t, k, capture{
		file: "debuginfo-lkdtm-WARNING", wait: 5 * time.Second, expect: "lkdtm",
		script: "echo WARNING > /sys/kernel/debug/provoke-crash/DIRECT",
	})
	console, err := os.ReadFile(filepath.Join(captureDir, "debuginfo-lkdtm-WARNING.txt"))
	if err != nil {
		t.Fatal(err)
	}
	findings := triage.Parse(console)
	if len(findings) == 0 || findings[0].Title != "WARNING in lkdtm_WARNING" {
		t.Fatalf("findings %+v", findings)
	}
	s, err := symbolize.New(k.Vmlinux)
	if err != nil {
		t.Fatal(err)
	}
	out, err := s.Report(e.ctx, findings[0].Report)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("symbolized report:\n%s", out)
	rip := regexp.MustCompile(`RIP: 0010:lkdtm_WARNING\+0x[0-9a-f]+/0x[0-9a-f]+ drivers/misc/lkdtm/bugs\.c:\d+`)
	if !rip.MatchString(out) {
		t.Errorf("RIP line not symbolized to drivers/misc/lkdtm/bugs.c")
	}
	// The WARNING header names the WARN site itself; its annotation must
	// agree with the file:line the kernel printed.
	hdr := regexp.MustCompile(`at (drivers/misc/lkdtm/bugs\.c:\d+) lkdtm_WARNING\+0x[0-9a-f]+/0x[0-9a-f]+ (\S+)`).FindStringSubmatch(out)
	if hdr == nil || hdr[1] != hdr[2] {
		t.Errorf("WARNING header annotation %v disagrees with the kernel's own file:line", hdr)
	}
}
