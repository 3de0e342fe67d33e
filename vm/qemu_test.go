package vm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// These tests start the real qemu-system-x86_64 with no kernel and its
// CPUs stopped (-S): nothing boots, so they cost well under a second of
// CPU each. The real boot is the harness's end-to-end test.

func requireQEMU(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"qemu-system-x86_64", "qemu-img"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found: %v", tool, err)
		}
	}
}

// rawImage creates a small raw image at path with qemu-img.
func rawImage(t *testing.T, path string) {
	t.Helper()
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "raw", path, "1M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create %s: %v: %s", path, err, out)
	}
}

// pausedConfig is a VM with root and scratch images in dir and no kernel,
// started paused.
func pausedConfig(t *testing.T, dir string) Config {
	t.Helper()
	root, scratch := filepath.Join(dir, "root.raw"), filepath.Join(dir, "scratch.raw")
	rawImage(t, root)
	rawImage(t, scratch)
	return Config{RootImage: root, Disks: []string{scratch}, Paused: true, Accel: "tcg", MemoryMB: 64, WorkDir: filepath.Join(t.TempDir(), "work")}
}

// reaped fails the test unless pid is gone: not running and not a zombie.
func reaped(t *testing.T, pid int) {
	t.Helper()
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("QEMU pid %d still exists after Close (kill 0: %v)", pid, err)
	}
}

// processesWith lists the pids whose command line contains s.
func processesWith(t *testing.T, s string) []string {
	t.Helper()
	dirs, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	var pids []string
	for _, p := range dirs {
		data, _ := os.ReadFile(p)
		if bytes.Contains(data, []byte(s)) && !strings.HasSuffix(filepath.Dir(p), "/self") {
			pids = append(pids, filepath.Base(filepath.Dir(p)))
		}
	}
	return pids
}

// TestQEMUCommaPaths: image paths and the QMP socket's directory with
// commas in them reach QEMU intact (QEMU's option syntax doubles a comma),
// as query-block and query-status over the real QMP show.
func TestQEMUCommaPaths(t *testing.T) {
	requireQEMU(t)
	dir := filepath.Join(t.TempDir(), "a,b")
	tmp := filepath.Join(t.TempDir(), "t,mp")
	for _, d := range []string{dir, tmp} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("TMPDIR", tmp) // where Start makes the QMP socket's directory
	cfg := pausedConfig(t, dir)
	cfg.RootImage = filepath.Join(dir, "root,img=x.raw")
	cfg.Disks = []string{filepath.Join(dir, "scratch,,2.raw")}
	rawImage(t, cfg.RootImage)
	rawImage(t, cfg.Disks[0])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	pid := m.Pid()
	defer func() {
		m.Close()
		reaped(t, pid)
	}()
	if !strings.Contains(m.sockDir, ",") {
		t.Errorf("QMP socket dir %s has no comma: TMPDIR not used", m.sockDir)
	}
	if st, err := m.Status(); err != nil || st != "prelaunch" {
		t.Errorf("Status = %q, %v; want prelaunch (-S)", st, err)
	}
	// "info block" rather than query-block: go-qemu hands a reply over in
	// its reader's buffer, which a reply of several KiB makes it reuse
	// (see qmp.go); this one is short.
	raw, err := m.runQMP(ctx, "human-monitor-command", map[string]string{"command-line": "info block"})
	if err != nil {
		t.Fatal(err)
	}
	var info string
	if err := json.Unmarshal(raw, &info); err != nil {
		t.Fatal(err)
	}
	// Each drive's line is "name (#blockN): FILE (raw)"; snapshot=on puts
	// the root image behind an overlay, named as its "Backing file:".
	for _, want := range append([]string{cfg.RootImage}, cfg.Disks...) {
		if !strings.Contains(info, ": "+want+" (raw)") && !strings.Contains(info, "Backing file:     "+want+" ") {
			t.Errorf("QEMU does not have %s: info block says\n%s", want, info)
		}
	}
	t.Logf("info block:\n%s", info)
}

// TestQEMUCloseReaps: Close ends QEMU by SIGTERM (SHUTDOWN says so) and
// reaps it; a QEMU that cannot answer (SIGSTOP) is killed after the grace
// period and reaped too; a second Close is harmless.
func TestQEMUCloseReaps(t *testing.T) {
	requireQEMU(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	m, err := Start(ctx, pausedConfig(t, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	pid := m.Pid()
	within(t, 10*time.Second, "Close", func() { m.Close() })
	reaped(t, pid)
	if m.ShutdownReason() != "host-signal" {
		t.Errorf("shutdown reason %q (events %v), want host-signal", m.ShutdownReason(), m.Events())
	}
	if _, err := os.Stat(m.sockDir); !os.IsNotExist(err) {
		t.Errorf("QMP socket dir %s left behind: %v", m.sockDir, err)
	}
	within(t, time.Second, "second Close", func() { m.Close() })

	m, err = Start(ctx, pausedConfig(t, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	pid = m.Pid()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	within(t, 10*time.Second, "Close of a stopped QEMU", func() { m.Close() })
	reaped(t, pid)
	if el := time.Since(start); el < 3*time.Second {
		t.Errorf("a stopped QEMU was gone after %s: the quit grace period was skipped", el)
	}
}

// TestQEMUStartFailureReaps: when Start fails after QEMU was launched, no
// QEMU is left: QEMU refusing its arguments (the error carries its
// message) and a context that ends while QMP comes up.
func TestQEMUStartFailureReaps(t *testing.T) {
	requireQEMU(t)
	dir := t.TempDir()
	cfg := pausedConfig(t, dir)
	cfg.RootImage = filepath.Join(dir, "missing.raw")
	_, err := Start(context.Background(), cfg)
	if !errors.Is(err, ErrInfra) || !strings.Contains(err.Error(), "missing.raw") {
		t.Errorf("missing root image: error %v, want ErrInfra naming the file", err)
	}
	if pids := processesWith(t, dir); len(pids) != 0 {
		t.Errorf("processes left with %s in their command line: %v", dir, pids)
	}
	log, _ := os.ReadFile(filepath.Join(cfg.WorkDir, "qemu.log"))
	if !strings.Contains(string(log), "missing.raw") {
		t.Errorf("qemu.log does not say what QEMU refused:\n%s", log)
	}

	// A deadline shorter than QEMU takes to open its QMP socket: Start
	// launches QEMU, then gives up on QMP and must take QEMU down with it.
	dir = t.TempDir()
	cfg = pausedConfig(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	m, err := Start(ctx, cfg)
	if err == nil {
		m.Close()
		t.Skip("QEMU opened QMP within 20ms here: the cancel path was not reached")
	}
	if !errors.Is(err, ErrInfra) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v, want ErrInfra wrapping the deadline", err)
	}
	log, _ = os.ReadFile(filepath.Join(cfg.WorkDir, "qemu.log"))
	if !strings.Contains(string(log), "-S") {
		t.Fatalf("QEMU was never launched (qemu.log %q): the test proves nothing", log)
	}
	if pids := processesWith(t, dir); len(pids) != 0 {
		t.Errorf("processes left with %s in their command line: %v", dir, pids)
	}
}

// TestQEMUExitedAfterShutdown: by the time Exited is closed, QEMU's last
// event (SHUTDOWN and its reason) is recorded: the harness reads
// GuestReset right after Exited.
func TestQEMUExitedAfterShutdown(t *testing.T) {
	requireQEMU(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m, err := Start(ctx, pausedConfig(t, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	pid := m.Pid()
	defer func() {
		m.Close()
		reaped(t, pid)
	}()
	// The reply races with QEMU's exit: either outcome is fine.
	go m.runQMP(ctx, "quit", nil)
	within(t, 10*time.Second, "Exited", func() { <-m.Exited() })
	if got := m.ShutdownReason(); got != "host-qmp-quit" {
		t.Errorf("shutdown reason %q when Exited closed (events %v), want host-qmp-quit", got, m.Events())
	}
}
