package reproducer

import (
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"patchbay/harness"
	"patchbay/kernel"
	"patchbay/record"
	"patchbay/rundir"
)

// Input is what a reproducer is made of.
type Input struct {
	Case    *harness.Case
	Variant string
	Seed    uint64
	Kernel  *kernel.Artifact // its .config is copied; nil is an error
	// GuestBin is the static pbguest (CGO_ENABLED=0) copied beside run.sh.
	GuestBin string
	// Record is the run this reproduces (optional): the README quotes its
	// outcome and reasons, and a copy goes in as recorded.json.
	Record *record.RunRecord
}

// FromRun is the Input for a recorded run.
func FromRun(r *rundir.Run, guestBin string) Input {
	return Input{Case: r.Case, Variant: r.Record.Variant, Seed: r.Record.Seed, Kernel: r.Kernel, GuestBin: guestBin, Record: r.Record}
}

// Files of a reproducer directory.
const (
	ScriptName  = "run.sh"
	GuestName   = "pbguest"
	ConfigName  = "config"
	PatchesName = "patches.txt"
	PatchDir    = "patches"
	ReadmeName  = "README.md"
	InitName    = "vm-init.sh"
)

// vmInit runs the reproducer as a VM's init: the root file system is any
// Debian-like image, this directory is the second disk (mounted read-only
// on /srv), the scratch disk the third; it powers the VM off at the end.
const vmInit = `#!/bin/sh
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs tmpfs /tmp
echo "vm-init: starting run.sh /dev/vdc"
sh /srv/run.sh /dev/vdc
echo "vm-init: run.sh exited $?"
sync
echo o > /proc/sysrq-trigger
sleep 60
`

// InitArgs is the end of the kernel command line that runs vm-init.sh
// from the second disk: the kernel hands what follows "--" to init, and
// the double-quoted command is one argument.
const InitArgs = `init=/bin/sh -- -c "mount -t ext4 -o ro /dev/vdb /srv && exec /bin/sh /srv/vm-init.sh"`

// Write makes the reproducer directory dir, which must not exist or be
// empty.
func Write(in Input, dir string) error {
	if in.Kernel == nil || in.Kernel.Config == "" {
		return fmt.Errorf("variant %s: no kernel recorded (did its build fail?): no .config to ship", in.Variant)
	}
	script, err := Script(in.Case, in.Variant, in.Seed)
	if err != nil {
		return err
	}
	if err := checkStatic(in.GuestBin); err != nil {
		return err
	}
	if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 {
		return fmt.Errorf("%s: exists and is not empty", dir)
	}
	if err := os.MkdirAll(filepath.Join(dir, PatchDir), 0o755); err != nil {
		return err
	}
	if err := copyFile(in.GuestBin, filepath.Join(dir, GuestName), 0o755); err != nil {
		return err
	}
	if err := copyFile(in.Kernel.Config, filepath.Join(dir, ConfigName), 0o644); err != nil {
		return fmt.Errorf("kernel .config: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, ScriptName), []byte(script), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, InitName), []byte(vmInit), 0o755); err != nil {
		return err
	}
	patches, err := writePatches(in, dir)
	if err != nil {
		return err
	}
	if in.Record != nil {
		data, err := json.MarshalIndent(in.Record, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "recorded.json"), append(data, '\n'), 0o644); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(dir, ReadmeName), []byte(readme(in, patches)), 0o644)
}

// checkStatic refuses a pbguest that needs a dynamic loader: the target
// machine may have another libc or none.
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("guest binary %s: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("guest binary %s is dynamically linked: build it with CGO_ENABLED=0", path)
		}
	}
	return nil
}

// patchLine is one applied patch: order, name, subject and sha256 of the
// bytes applied.
type patchLine struct {
	N       int
	Name    string
	File    string // under patches/
	Subject string
	Sum     string
}

// writePatches writes patches.txt and a copy of each patch as applied.
func writePatches(in Input, dir string) ([]patchLine, error) {
	refs, err := in.Case.PatchStack(in.Variant)
	if err != nil {
		return nil, err
	}
	var stack []kernel.Patch
	if len(refs) > 0 {
		if stack, err = kernel.ExpandPatches(refs); err != nil {
			return nil, err
		}
	}
	var lines []patchLine
	var b strings.Builder
	fmt.Fprintf(&b, "# Patch stack of variant %s, in the order applied on %s.\n# N sha256 file subject\n", in.Variant, kernelSource(in))
	for i, p := range stack {
		sum := sha256.Sum256(p.Data)
		l := patchLine{N: i + 1, Name: p.Name(), Subject: p.Subject, Sum: hex.EncodeToString(sum[:])}
		l.File = fmt.Sprintf("%02d-%s.patch", l.N, safeName(strings.TrimSuffix(filepath.Base(p.File), ".patch"), p.Index, p.Count))
		if err := os.WriteFile(filepath.Join(dir, PatchDir, l.File), p.Data, 0o644); err != nil {
			return nil, err
		}
		fmt.Fprintf(&b, "%d %s %s/%s %s\n", l.N, l.Sum, PatchDir, l.File, oneLine(l.Subject))
		lines = append(lines, l)
	}
	return lines, os.WriteFile(filepath.Join(dir, PatchesName), []byte(b.String()), 0o644)
}

// safeName keeps a file name to letters, digits, '.', '-' and '_'.
func safeName(base string, index, count int) string {
	out := []rune{}
	for _, r := range base {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-', r == '_':
			out = append(out, r)
		default:
			out = append(out, '_')
		}
	}
	if count > 1 {
		return fmt.Sprintf("%s-%d", string(out), index)
	}
	return string(out)
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func copyFile(src, dst string, mode os.FileMode) error {
	st, err := os.Stat(src)
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s: not a regular file", src)
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copying %s: %w", src, err)
	}
	return errors.Join(out.Sync(), out.Close())
}

// kernelSource is the source as built (with the Debian package version)
// when the kernel recorded it, else as the case names it.
func kernelSource(in Input) string {
	if in.Kernel != nil && in.Kernel.Source != "" {
		return in.Kernel.Source
	}
	return in.Case.Kernel.Source
}
