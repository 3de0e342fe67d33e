package vm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Snapshot restore, for QEMU 7.2 (Debian 12): the VM state goes to a file
// through migration to "exec:cat > FILE" (the file: URI came with 8.2) and
// comes back with -incoming "exec:cat FILE". The root disk's state must be
// the one the saved guest knows: the machine that is frozen runs on a qcow2
// overlay, which Freeze pivots to a new overlay before saving, so the old one
// is never written again and each restore stacks a fresh overlay on it.

// ErrNoSnapshot: QEMU cannot save or restore here (no qemu-img, a path QEMU's
// shell cannot be handed safely, a failed migration); boot cold instead.
var ErrNoSnapshot = errors.New("snapshot unavailable")

// CheckPath refuses a path that QEMU's exec: shell or its -drive option
// parser could misread: only absolute paths of letters, digits and ./_+-.
// The paths are the harness's own, but they reach /bin/sh -c.
func CheckPath(p string) error {
	if !filepath.IsAbs(p) {
		return fmt.Errorf("%w: path %q is not absolute", ErrNoSnapshot, p)
	}
	for _, r := range p {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._+-", r)
		if !ok {
			return fmt.Errorf("%w: path %q has %q (only letters, digits and /._+- reach QEMU's shell)", ErrNoSnapshot, p, r)
		}
	}
	return nil
}

// incomingArgs starts QEMU paused (-S), loading the state from file. The
// path was checked by CheckPath (Start does) and is single-quoted anyway.
func incomingArgs(file string) []string {
	return []string{"-S", "-incoming", "exec:cat '" + file + "'"}
}

// checkSnapshotPaths validates the paths that reach QEMU's shell or -drive.
func checkSnapshotPaths(cfg Config) error {
	for _, p := range []string{cfg.RootOverlay, cfg.Incoming} {
		if p != "" {
			if err := CheckPath(p); err != nil {
				return err
			}
		}
	}
	return nil
}

// CreateOverlay makes a qcow2 file at path whose backing file is backing
// (format "raw" or "qcow2"): writes go to path, the backing stays as it is.
func CreateOverlay(ctx context.Context, backing, backingFmt, path string) error {
	for _, p := range []string{backing, path} {
		if err := CheckPath(p); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "qemu-img", "create", "-q", "-f", "qcow2",
		"-F", backingFmt, "-b", backing, path).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%w: qemu-img create %s over %s: %v: %s", ErrNoSnapshot, path, backing, err, bytes.TrimSpace(out))
	}
	return nil
}

// Disconnect closes the SSH connection (sessions end with it). WaitReady
// connects again.
func (m *Machine) Disconnect() {
	m.mu.Lock()
	client := m.client
	m.client = nil
	m.mu.Unlock()
	if client != nil {
		client.Close()
	}
}

// Freeze saves the VM state to file and leaves the VM paused. The SSH
// connection is closed first: a restored TCP session would be dead. When
// newTop is set, the root overlay is first pivoted to a new overlay at newTop
// (the current one becomes its read-only backing), so the frozen overlay
// matches the saved state and this VM can go on (Continue) writing to newTop.
func (m *Machine) Freeze(ctx context.Context, file, newTop string) error {
	if m.cfg.RootOverlay == "" {
		return fmt.Errorf("%w: the root disk is not an overlay", ErrNoSnapshot)
	}
	for _, p := range []string{file, newTop} {
		if p != "" {
			if err := CheckPath(p); err != nil {
				return err
			}
		}
	}
	m.Disconnect()
	// Let the guest see the connection close before its clock stops.
	select {
	case <-time.After(300 * time.Millisecond):
	case <-ctx.Done():
		return ctx.Err()
	}
	if _, err := m.runQMP(ctx, "stop", nil); err != nil {
		return err
	}
	if newTop != "" {
		// Drains and flushes the root first: the old overlay is complete.
		if _, err := m.runQMP(ctx, "blockdev-snapshot-sync", map[string]any{
			"device": "root", "snapshot-file": newTop, "format": "qcow2"}); err != nil {
			return fmt.Errorf("%w: %v", ErrNoSnapshot, err)
		}
	}
	if _, err := m.runQMP(ctx, "migrate", map[string]any{"uri": "exec:cat > '" + file + "'"}); err != nil {
		return fmt.Errorf("%w: %v", ErrNoSnapshot, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	for {
		raw, err := m.runQMP(ctx, "query-migrate", nil)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrNoSnapshot, err)
		}
		var st struct {
			Status    string `json:"status"`
			ErrorDesc string `json:"error-desc"`
		}
		if err := json.Unmarshal(raw, &st); err != nil {
			return fmt.Errorf("%w: query-migrate reply %s: %v", ErrNoSnapshot, raw, err)
		}
		switch st.Status {
		case "completed":
			return nil
		case "failed", "cancelled":
			return fmt.Errorf("%w: saving the VM state to %s: migration %s: %s", ErrNoSnapshot, file, st.Status, st.ErrorDesc)
		}
		select {
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			return fmt.Errorf("%w: saving the VM state to %s: %v", ErrNoSnapshot, file, ctx.Err())
		}
	}
}

// Continue resumes a paused VM (after Freeze, or after Resume's load).
func (m *Machine) Continue(ctx context.Context) error {
	_, err := m.runQMP(ctx, "cont", nil)
	return err
}

// Resume waits for a machine started with Config.Incoming to finish loading
// its saved state, then runs it. A state QEMU cannot load ends QEMU: that is
// ErrNoSnapshot (boot cold), never the kernel's fault.
func (m *Machine) Resume(ctx context.Context) error {
	if m.cfg.Incoming == "" {
		return errors.New("vm: Resume without Config.Incoming")
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for {
		raw, err := m.runQMP(ctx, "query-status", nil)
		if err != nil {
			return fmt.Errorf("%w: loading %s: %v", ErrNoSnapshot, m.cfg.Incoming, err)
		}
		var st struct {
			Status string `json:"status"`
		}
		if err := json.Unmarshal(raw, &st); err != nil {
			return fmt.Errorf("%w: query-status reply %s: %v", ErrNoSnapshot, raw, err)
		}
		switch st.Status {
		case "inmigrate":
		case "paused", "prelaunch":
			if err := m.Continue(ctx); err != nil {
				return fmt.Errorf("%w: %v", ErrNoSnapshot, err)
			}
			return nil
		default:
			return fmt.Errorf("%w: loading %s: VM %s", ErrNoSnapshot, m.cfg.Incoming, st.Status)
		}
		select {
		case <-time.After(10 * time.Millisecond):
		case <-ctx.Done():
			return fmt.Errorf("%w: loading %s: %v", ErrNoSnapshot, m.cfg.Incoming, ctx.Err())
		}
	}
}

// Reconnect logs in to a guest that is known to be up (restored, or just
// saved): no banner probe first, which would cost sshd a second fork.
// It retries until ctx ends; a failure is ErrBoot.
func (m *Machine) Reconnect(ctx context.Context) error {
	addr := fmt.Sprintf("127.0.0.1:%d", m.port)
	var lastErr error
	for {
		client, err := dialSSH(ctx, addr, m.sshConfig())
		if err == nil {
			m.mu.Lock()
			m.client = client
			m.mu.Unlock()
			return nil
		}
		lastErr = err
		select {
		case <-m.exited:
			return fmt.Errorf("%w before SSH came back (%v)", ErrExited, m.waitErr)
		case <-m.halted:
			return fmt.Errorf("%w before SSH came back", ErrPanicked)
		case <-ctx.Done():
			return fmt.Errorf("%w: no SSH login after restore: %v", ErrBoot, lastErr)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
