package harness

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"patchbay/casespec"
	"patchbay/images"
	"patchbay/kernel"
	"patchbay/record"
	"patchbay/vm"
)

// faultEnv is what every fault test needs: the stock kernel of the shipped
// case, the guest image and the guest binary, all from the cache.
type faultEnv struct {
	c      *Case
	k      *kernel.Artifact
	img    *images.Image
	guest  string
	result string
	snaps  *Snapshots // nil: every run boots cold
}

func newFaultEnv(t *testing.T) *faultEnv {
	t.Helper()
	if os.Getenv("PATCHBAY_E2E") == "" {
		t.Skip("set PATCHBAY_E2E=1 (make test does): boots real kernels in QEMU")
	}
	c, err := LoadCase("../cases/ext4-journal-defrag")
	if err != nil {
		t.Fatal(err)
	}
	c.Workload.Duration = casespec.Duration(4 * time.Second)
	ctx := context.Background()
	cache := DefaultCacheDir()
	specs, err := c.KernelSpecs([]string{"eopnotsupp"})
	if err != nil {
		t.Fatal(err)
	}
	k, err := (&kernel.Builder{CacheDir: cache}).Build(ctx, specs[0])
	if err != nil {
		t.Fatal(err)
	}
	img, err := (&images.Builder{CacheDir: cache}).Ensure(ctx, images.DefaultRecipe())
	if err != nil {
		t.Fatal(err)
	}
	guest, err := ensureGuest(ctx, Options{CacheDir: cache})
	if err != nil {
		t.Fatal(err)
	}
	return &faultEnv{c: c, k: k, img: img, guest: guest, result: t.TempDir()}
}

func (e *faultEnv) runner(t *testing.T) *Runner {
	return &Runner{Case: e.c, Image: e.img, GuestBin: e.guest, Accel: "tcg", ResultsDir: e.result,
		Progress: testWriter{t}, WorkloadGrace: 30 * time.Second, Snapshots: e.snaps}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// qemuLeft reports whether any process still mentions dir on its command
// line: every QEMU of a run has its run directory there.
func qemuLeft(dir string) bool {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		cmd, err := os.ReadFile(p)
		if err == nil && bytes.Contains(cmd, []byte("qemu")) && bytes.Contains(cmd, []byte(dir)) {
			return true
		}
	}
	return false
}

// runFault runs one run with a fault injected at the start of phase and
// checks the outcome, the time it took and that nothing was left behind.
func runFault(t *testing.T, ctx context.Context, e *faultEnv, phase string, inject func(ctx context.Context, m *vm.Machine) error, limit time.Duration) *record.RunRecord {
	t.Helper()
	// This run's temporary files only: other patchbay sessions on the host
	// have scratch dirs of their own in the shared temp dir.
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	r := e.runner(t)
	r.BeforePhase = func(ctx context.Context, p string, m *vm.Machine) error {
		if p != phase {
			return nil
		}
		return inject(ctx, m)
	}
	start := time.Now()
	rec, err := r.RunOne(ctx, "eopnotsupp", 0, 1, e.k)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	t.Logf("outcome %s after %s (start %s): %v", rec.Outcome, took.Round(time.Second), rec.Start, rec.Reasons)
	if e.snaps != nil && phase != "none" && rec.Start != StartRestore {
		t.Errorf("start %s, want restore (from the snapshot)", rec.Start)
	}
	if took > limit {
		t.Errorf("run took %s, limit %s", took, limit)
	}
	if qemuLeft(e.result) {
		t.Errorf("a QEMU process of this run is still alive")
	}
	dir := filepath.Join(e.result, rec.Dir)
	for _, f := range []string{"run.json", "console.log", "qemu.log", "findings.json"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("results: %v", err)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(tmp, "pbscratch*")); len(left) > 0 {
		t.Errorf("scratch disks left behind: %v", left)
	}
	return rec
}

// later runs f after d in the background, so the phase goes on meanwhile.
func later(d time.Duration, f func()) error {
	go func() {
		time.Sleep(d)
		f()
	}()
	return nil
}

// TestFaults seeds faults into runs that boot cold and, in restore mode,
// into runs restored from a snapshot: the outcome classes must not depend on
// how the VM started.
func TestFaults(t *testing.T) {
	for _, mode := range []string{"cold", "restore"} {
		t.Run(mode, func(t *testing.T) {
			e := newFaultEnv(t)
			if mode == "restore" {
				e.snaps = NewSnapshots(t.TempDir(), false)
				rec, err := e.runner(t).RunOne(context.Background(), "eopnotsupp", 0, 1, e.k)
				if err != nil {
					t.Fatal(err)
				}
				if rec.Outcome != record.Pass || rec.Start != StartSnapshot {
					t.Fatalf("the run saving the snapshot: %s, start %s %v", rec.Outcome, rec.Start, rec.Reasons)
				}
			}
			testFaults(t, e)
		})
	}
}

func testFaults(t *testing.T, e *faultEnv) {
	ctx := context.Background()

	t.Run("guest panic is a crash", func(t *testing.T) {
		rec := runFault(t, ctx, e, "workload", func(ctx context.Context, m *vm.Machine) error {
			// The case's cmdline has oops=panic; sysrq c panics directly.
			return later(2*time.Second, func() { m.Output(ctx, "echo c > /proc/sysrq-trigger") })
		}, 2*time.Minute)
		if rec.Outcome != record.Crash {
			t.Fatalf("outcome %s %v, want crash", rec.Outcome, rec.Reasons)
		}
		if !strings.Contains(strings.Join(rec.Reasons, " "), "sysrq") {
			t.Errorf("reasons %v do not name the sysrq panic", rec.Reasons)
		}
	})

	t.Run("guest reset is a crash", func(t *testing.T) {
		rec := runFault(t, ctx, e, "workload", func(ctx context.Context, m *vm.Machine) error {
			return later(2*time.Second, func() { m.Output(ctx, "echo b > /proc/sysrq-trigger") })
		}, 2*time.Minute)
		if rec.Outcome != record.Crash || !strings.Contains(strings.Join(rec.Reasons, " "), "unexpected reboot") {
			t.Fatalf("outcome %s %v, want crash: unexpected reboot", rec.Outcome, rec.Reasons)
		}
	})

	t.Run("stopped QEMU is a hang", func(t *testing.T) {
		rec := runFault(t, ctx, e, "workload", func(ctx context.Context, m *vm.Machine) error {
			return later(time.Second, func() { syscall.Kill(m.Pid(), syscall.SIGSTOP) })
		}, 2*time.Minute)
		if rec.Outcome != record.Hang {
			t.Fatalf("outcome %s %v, want hang", rec.Outcome, rec.Reasons)
		}
	})

	t.Run("killed QEMU is an infra error", func(t *testing.T) {
		rec := runFault(t, ctx, e, "workload", func(ctx context.Context, m *vm.Machine) error {
			return later(time.Second, func() { syscall.Kill(m.Pid(), syscall.SIGKILL) })
		}, time.Minute)
		if rec.Outcome != record.InfraError {
			t.Fatalf("outcome %s %v, want infra-error", rec.Outcome, rec.Reasons)
		}
	})

	t.Run("killed sshd is not a pass", func(t *testing.T) {
		rec := runFault(t, ctx, e, "workload", func(ctx context.Context, m *vm.Machine) error {
			return later(time.Second, func() { m.Output(ctx, "pkill -KILL sshd") })
		}, 2*time.Minute)
		if rec.Outcome == record.Pass {
			t.Fatalf("outcome pass with sshd killed mid-run")
		}
	})

	t.Run("bad root is a boot error", func(t *testing.T) {
		saved := e.c.Kernel.Cmdline
		defer func() { e.c.Kernel.Cmdline = saved }()
		e.c.Kernel.Cmdline += " root=/dev/patchbay-no-such-disk"
		rec := runFault(t, ctx, e, "none", nil, 2*time.Minute)
		if rec.Outcome != record.BootError {
			t.Fatalf("outcome %s %v, want boot-error", rec.Outcome, rec.Reasons)
		}
		if !strings.Contains(strings.Join(rec.Reasons, " "), "mount root fs") {
			t.Errorf("reasons %v do not say why the boot failed", rec.Reasons)
		}
	})

	t.Run("interrupt is recorded as interrupted", func(t *testing.T) {
		ictx, cancel := context.WithCancel(ctx)
		defer cancel()
		rec := runFault(t, ictx, e, "workload", func(ctx context.Context, m *vm.Machine) error {
			return later(time.Second, cancel)
		}, time.Minute)
		if rec.Outcome != record.Interrupted {
			t.Fatalf("outcome %s %v, want interrupted", rec.Outcome, rec.Reasons)
		}
	})
}

// TestFullResultsDisk runs with the results on a tiny tmpfs: the run must end
// as an infra error (evidence lost) or fail to write its records with a
// clear error, never pass and never be blamed on the kernel.
func TestFullResultsDisk(t *testing.T) {
	e := newFaultEnv(t)
	small := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", small).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a small tmpfs (needs root): %v %s", err, out)
	}
	defer exec.Command("umount", small).Run()
	e.result = small
	r := e.runner(t)
	rec, err := r.RunOne(context.Background(), "eopnotsupp", 0, 1, e.k)
	switch {
	case err != nil:
		if !strings.Contains(err.Error(), "no space left") {
			t.Fatalf("error %v does not say the disk is full", err)
		}
	case rec.Outcome != record.InfraError:
		t.Fatalf("outcome %s %v, want infra-error", rec.Outcome, rec.Reasons)
	}
	if qemuLeft(small) {
		t.Errorf("a QEMU process of this run is still alive")
	}
}

func TestResultsDirNotWritable(t *testing.T) {
	c, err := LoadCase("../cases/ext4-journal-defrag")
	if err != nil {
		t.Fatal(err)
	}
	// A regular file where a directory is needed fails even for root.
	blocker := filepath.Join(t.TempDir(), "results")
	os.WriteFile(blocker, nil, 0o644)
	_, err = RunCase(context.Background(), c, Options{CacheDir: t.TempDir(), ResultsDir: blocker})
	if err == nil || !strings.Contains(err.Error(), "results directory") || !strings.Contains(err.Error(), blocker) {
		t.Fatalf("err = %v, want a results directory error naming %s", err, blocker)
	}
}
