package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"patchbay/images"
	"patchbay/kernel"
	"patchbay/triage"
	"patchbay/triage/symbolize"
	"patchbay/vm"
)

// Guest paths. The root image is attached snapshot=on, so nothing persists.
const (
	guestBin   = "/usr/local/bin/pbguest"
	scratchDev = "/dev/vdb"
	mountPoint = "/mnt/scratch"
	workDir    = mountPoint + "/work"
	donorDir   = mountPoint + "/donors"
	guestTmp   = "/tmp/pb"
)

// Runner runs single runs of a case: one fresh VM per run (lockdep reports
// once per boot), evidence written under ResultsDir/<variant>/<index>/.
type Runner struct {
	Case       *Case
	Image      *images.Image
	GuestBin   string // static pbguest binary for the guest
	Accel      string // kvm or tcg
	ResultsDir string
	Progress   io.Writer

	// WorkloadGrace is how long past the workload's duration its sessions
	// may run before the run counts as a hang (default 2 min + duration:
	// TCG starts slowly and the final munmap/fsync can take a while).
	WorkloadGrace time.Duration
	// BeforePhase, when set, runs as each guest phase (setup, workload,
	// verify) begins. Fault tests use it to inject failures; an error is
	// handled like a failed phase.
	BeforePhase func(ctx context.Context, phase string, m *vm.Machine) error
	// Keep leaves each run's VM running after it is judged, until ctx
	// ends, for `patchbay ssh` and `patchbay console`.
	Keep bool
	// Phases adds a progress line as each phase of a run begins.
	Phases bool
}

// RunOne runs variant's run number index with the given seed and kernel.
// It always returns a record with an outcome; the error is only for results
// that could not be written.
func (r *Runner) RunOne(ctx context.Context, variant string, index int, seed uint64, k *kernel.Artifact) (*RunRecord, error) {
	rel := filepath.Join(variant, fmt.Sprint(index))
	dir := filepath.Join(r.ResultsDir, rel)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("results directory: %w", err)
	}
	rec := &RunRecord{
		Case: r.Case.Name, Variant: variant, Index: index, Seed: seed,
		Kernel: k.Key, Release: k.Release, Accel: r.Accel, Started: time.Now().UTC(), Dir: rel,
	}
	st, kept := r.execute(ctx, rec, dir, k)
	rec.Seconds = time.Since(rec.Started).Seconds()
	if ctx.Err() != nil {
		st.Interrupted = true
	}
	Judge(rec, st, r.Case.Variants[variant].Expect)
	if err := writeJSON(filepath.Join(dir, "findings.json"), rec.Findings); err != nil {
		return rec, err
	}
	if err := writeJSON(filepath.Join(dir, "run.json"), rec); err != nil {
		return rec, err
	}
	r.logf("%s #%d: %s %s", variant, index, rec.Outcome, strings.Join(rec.Reasons, "; "))
	if kept != nil {
		defer kept.Close()
		if err := writeKeepInfo(dir, kept, r.Image); err != nil {
			return rec, err
		}
		r.logf("VM kept alive until Ctrl-C: patchbay ssh %s | patchbay console %s", dir, dir)
		<-ctx.Done()
	}
	return rec, nil
}

func (r *Runner) logf(format string, args ...any) {
	if r.Progress != nil {
		fmt.Fprintf(r.Progress, "[run] "+format+"\n", args...)
	}
}

// execute boots the VM and drives the phases; it fills rec and returns how
// the run went. The VM is always closed and the console triaged.
func (r *Runner) execute(ctx context.Context, rec *RunRecord, dir string, k *kernel.Artifact) (st RunStatus, kept *vm.Machine) {
	c := r.Case
	// The scratch disk is sparse, per run, and not evidence: keep it out of
	// the results directory (which may be small, slow or shared).
	scratchDir, err := os.MkdirTemp("", "pbscratch")
	if err != nil {
		st.Infra = "scratch disk: " + err.Error()
		return st, nil
	}
	defer os.RemoveAll(scratchDir)
	scratch := filepath.Join(scratchDir, "scratch.raw")
	if err := makeSparse(scratch, int64(c.VM.ScratchMB)<<20); err != nil {
		st.Infra = "scratch disk: " + err.Error()
		return st, nil
	}
	signer, err := r.Image.Signer()
	if err != nil {
		st.Infra = err.Error()
		return st, nil
	}
	hostKey, err := r.Image.HostPublicKey()
	if err != nil {
		st.Infra = err.Error()
		return st, nil
	}
	m, err := vm.Start(ctx, vm.Config{
		Kernel: k.BzImage, Cmdline: c.Kernel.Cmdline, RootImage: r.Image.Root,
		Disks: []string{scratch}, MemoryMB: c.VM.MemoryMB, CPUs: c.VM.CPUs,
		Accel: r.Accel, WorkDir: dir, Signer: signer, HostKey: hostKey,
	})
	if err != nil {
		st.Infra = err.Error()
		return st, nil
	}
	defer func() {
		rec.QMPEvents = m.Events()
		rec.ConsoleDropped = m.ConsoleDropped()
		if r.Keep && ctx.Err() == nil {
			kept = m // the caller closes it after the user is done
		} else {
			m.Close()
		}
		if err := m.ConsoleError(); err != nil {
			st.Infra = "console.log: " + err.Error()
		}
		r.triage(ctx, rec, dir, m.Console(), k.Vmlinux)
	}()

	bootCtx, cancel := context.WithTimeout(ctx, c.VM.BootTimeout.D())
	err = m.WaitReady(bootCtx)
	cancel()
	if err != nil {
		switch {
		case ctx.Err() != nil:
		case errors.Is(err, vm.ErrPanicked):
			st.Panicked = true
			st.Boot = "kernel panicked during boot"
		case errors.Is(err, vm.ErrExited):
			st.Boot = "QEMU exited during boot: " + err.Error()
		default:
			st.Boot = err.Error()
		}
		return st, nil
	}
	rec.BootSecs = time.Since(rec.Started).Seconds()
	r.logf("%s #%d: booted in %.1fs (%s)", rec.Variant, rec.Index, rec.BootSecs, r.Accel)

	g := &guest{m: m, dir: dir, before: r.BeforePhase}
	if r.Phases {
		g.logf = func(format string, args ...any) {
			r.logf("%s #%d +%s: %s", rec.Variant, rec.Index, time.Since(rec.Started).Round(time.Second), fmt.Sprintf(format, args...))
		}
	}
	defer func() {
		if g.saveErr != nil && st.Infra == "" {
			st.Infra = "writing results: " + g.saveErr.Error()
		}
	}()
	if err := g.phase(ctx, "setup"); err != nil {
		return g.lost(ctx, st, err), nil
	}
	if err := r.upload(ctx, g); err != nil {
		return g.lost(ctx, st, err), nil
	}
	if s, err := r.setup(ctx, g, rec); err != nil {
		return g.lost(ctx, st, err), nil
	} else if s != "" {
		st.Setup = s
		return st, nil
	}
	if err := g.phase(ctx, "workload"); err != nil {
		return g.lost(ctx, st, err), nil
	}
	if err := r.workload(ctx, g, rec); err != nil {
		return g.lost(ctx, st, err), nil
	}
	if rec.BufferedIomap != nil {
		if err := newIomapTrace().stop(ctx, g, rec); err != nil {
			return g.lost(ctx, st, err), nil
		}
		r.logf("%s #%d: %s", rec.Variant, rec.Index, rec.BufferedIomap.Summary())
	}
	if err := g.phase(ctx, "verify"); err != nil {
		return g.lost(ctx, st, err), nil
	}
	if err := r.verify(ctx, g, rec); err != nil {
		return g.lost(ctx, st, err), nil
	}
	if len(rec.Verify) != 3 {
		st.Incomplete = fmt.Sprintf("verify produced %d of 3 phases", len(rec.Verify))
	}
	if out, err := g.m.Output(ctx, "dmesg"); err == nil {
		g.save("dmesg.txt", out)
	}
	return st, nil
}

// triage parses the console (it survives a dead SSH) and dmesg, keeping the
// first occurrence of each distinct finding.
func (r *Runner) triage(ctx context.Context, rec *RunRecord, dir string, console []byte, vmlinux string) {
	findings := triage.Parse(console)
	if dmesg, err := os.ReadFile(filepath.Join(dir, "dmesg.txt")); err == nil {
		seen := map[string]bool{}
		for _, f := range findings {
			seen[string(f.Kind)+"\x00"+f.Title] = true
		}
		for _, f := range triage.Parse(dmesg) {
			if !seen[string(f.Kind)+"\x00"+f.Title] {
				findings = append(findings, f)
			}
		}
	}
	rec.Findings = findings
	symbolizeFindings(ctx, rec, vmlinux)
}

// symbolizeFindings adds file:line to the findings' stack frames when the
// kernel was built with debug info; without it there is nothing to add, and
// a failure only costs the annotation, never the finding.
func symbolizeFindings(ctx context.Context, rec *RunRecord, vmlinux string) {
	if len(rec.Findings) == 0 || vmlinux == "" || !symbolize.Available() {
		return
	}
	s, err := symbolize.New(vmlinux)
	if err != nil {
		return
	}
	if ctx.Err() != nil {
		ctx = context.Background() // an interrupted run still deserves its report
	}
	for i := range rec.Findings {
		if out, err := s.Report(ctx, rec.Findings[i].Report); err == nil {
			rec.Findings[i].Report = out
		}
	}
}

// guest wraps the machine with the run's logging conventions.
type guest struct {
	m       *vm.Machine
	dir     string
	before  func(ctx context.Context, phase string, m *vm.Machine) error
	logf    func(format string, args ...any) // progress, prefixed with the run
	saveErr error                            // first failure to write evidence: the host's fault
}

// save writes evidence into the run directory, remembering the first error.
func (g *guest) save(name string, data []byte) error {
	err := writeFileAtomic(filepath.Join(g.dir, name), data)
	if err != nil && g.saveErr == nil {
		g.saveErr = err
	}
	return err
}

func (g *guest) saveJSON(name string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return g.save(name, append(data, '\n'))
}

// phase writes a marker to the kernel log so findings can be placed.
func (g *guest) phase(ctx context.Context, name string) error {
	if g.logf != nil {
		g.logf("phase %s", name)
	}
	mctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if _, err := g.m.Output(mctx, fmt.Sprintf("echo 'patchbay: phase %s' > /dev/kmsg", name)); err != nil {
		return err
	}
	if g.before != nil {
		return g.before(ctx, name, g.m)
	}
	return nil
}

// sh runs a command with a timeout, saving its output under name in the run
// directory when name is not empty.
func (g *guest) sh(ctx context.Context, timeout time.Duration, name, cmd string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var out, errb bytes.Buffer
	err := g.m.Run(ctx, cmd, nil, &out, &errb)
	if name != "" {
		g.save(name, append(out.Bytes(), errb.Bytes()...))
	}
	if err != nil {
		if msg := lastLine(errb.String()); msg != "" {
			return out.Bytes(), fmt.Errorf("%w: %s", err, msg)
		}
		return out.Bytes(), err
	}
	return out.Bytes(), nil
}

// lost turns an error in a guest step into a status: the user stopped us,
// the VM died (crash or infra, decided from the console later), a deadline
// passed with the VM alive (hang), or the step itself failed.
func (g *guest) lost(ctx context.Context, st RunStatus, err error) RunStatus {
	if ctx.Err() != nil {
		st.Interrupted = true
		return st
	}
	if g.saveErr != nil {
		st.Infra = "writing results: " + g.saveErr.Error()
		return st
	}
	// SSH often notices first; give QEMU a moment to exit or report the
	// panic (and the console to receive the rest of a splat).
	select {
	case <-g.m.Exited():
		if g.m.GuestReset() {
			st.Rebooted = true
			return st
		}
		st.VMDied = "QEMU exited mid-run: " + err.Error()
		return st
	case <-g.m.Halted():
		st.Panicked = true
		return st
	case <-time.After(3 * time.Second):
	}
	if g.m.IOError() {
		// QEMU pauses the guest when the host cannot write its disk.
		st.Infra = "host I/O error on a VM disk (disk full?): " + err.Error()
		return st
	}
	if errors.Is(err, context.DeadlineExceeded) {
		st.Timeout = "deadline passed with the VM running: " + err.Error()
		return st
	}
	if status, serr := g.m.Status(); serr == nil && status != "running" {
		st.VMDied = fmt.Sprintf("VM %s: %v", status, err)
		return st
	}
	st.Incomplete = err.Error()
	return st
}

func (r *Runner) upload(ctx context.Context, g *guest) error {
	f, err := os.Open(r.GuestBin)
	if err != nil {
		return fmt.Errorf("guest binary: %w", err)
	}
	defer f.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	return g.m.Upload(ctx, f, guestBin, 0o755)
}

// common are the pbguest flags every subcommand shares.
func (r *Runner) common(seed uint64) string {
	w := r.Case.Workload
	return fmt.Sprintf("--dir %s --files %d --blocks %d --writers %d --seed %d",
		workDir, w.Files, w.Blocks, w.MmapWriters+w.PwriteWriters, seed)
}

// setup makes and mounts the file system and the work files. It returns a
// non-empty reason when the case's setup did not take effect.
func (r *Runner) setup(ctx context.Context, g *guest, rec *RunRecord) (string, error) {
	fs := r.Case.Filesystem
	cmd := fmt.Sprintf("set -e; %s %s; mkdir -p %s; mount -t ext4 -o %s %s %s; mkdir -p %s %s %s",
		fs.Mkfs, scratchDev, mountPoint, mountOpts(fs.MountOptions), scratchDev, mountPoint, workDir, donorDir, guestTmp)
	if _, err := g.sh(ctx, 2*time.Minute, "setup.txt", cmd); err != nil {
		return "", err
	}
	if r.Case.Workload.Kind == WorkloadFio {
		return "", nil // fio lays out its own files
	}
	trace := newIomapTrace()
	if fs.CheckBufferedIomap {
		if reason, err := trace.start(ctx, g, rec); err != nil || reason != "" {
			return reason, err
		}
	}
	prep := guestBin + " prepare " + r.common(rec.Seed)
	if fs.JournalData {
		prep += " --journal-data"
	}
	out, err := g.sh(ctx, 5*time.Minute, "", prep)
	if err != nil {
		return "", err
	}
	g.save("prepare.json", out)
	var p struct {
		JournalDataFiles int `json:"journal_data_files"`
	}
	if err := json.Unmarshal(out, &p); err != nil {
		return "", fmt.Errorf("prepare output: %w", err)
	}
	rec.JournalDataFiles = p.JournalDataFiles
	if fs.CheckBufferedIomap {
		if reason, err := trace.setupDone(ctx, g, rec, mountOpts(fs.MountOptions)); err != nil || reason != "" {
			return reason, err
		}
	}
	if !fs.JournalData {
		return "", nil
	}
	// Check with the standard tool too, not only with our own ioctl.
	lsattr, err := g.sh(ctx, time.Minute, "lsattr.txt", "lsattr "+workDir)
	if err != nil {
		return "", err
	}
	flagged := 0
	for _, line := range strings.Split(string(lsattr), "\n") {
		if attrs, _, ok := strings.Cut(line, " "); ok && strings.Contains(attrs, "j") {
			flagged++
		}
	}
	if p.JournalDataFiles != r.Case.Workload.Files || flagged != r.Case.Workload.Files {
		return fmt.Sprintf("data journaling set on %d (ioctl) / %d (lsattr) of %d files", p.JournalDataFiles, flagged, r.Case.Workload.Files), nil
	}
	return "", nil
}

func mountOpts(o string) string {
	if o == "" {
		return "defaults"
	}
	return o
}

// workload starts every writer and defrag worker in its own SSH session at
// once and waits for all of them.
func (r *Runner) workload(ctx context.Context, g *guest, rec *RunRecord) error {
	if r.Case.Workload.Kind == WorkloadFio {
		return r.fioWorkload(ctx, g, rec)
	}
	w := r.Case.Workload
	dur := w.Duration.D()
	grace := r.WorkloadGrace
	if grace == 0 {
		grace = 2*time.Minute + dur
	}
	deadline := dur + grace
	type job struct {
		name, cmd string
		defrag    bool
	}
	var jobs []job
	for i := 0; i < w.MmapWriters+w.PwriteWriters; i++ {
		mode := "mmap"
		if i >= w.MmapWriters {
			mode = "pwrite"
		}
		cmd := fmt.Sprintf("%s write %s --mode %s --id %d --duration %s", guestBin, r.common(rec.Seed), mode, i, dur)
		if mode == "mmap" && w.MsyncEvery > 0 {
			cmd += fmt.Sprintf(" --msync-every %d", w.MsyncEvery)
		}
		if w.CheckEvery > 0 {
			cmd += fmt.Sprintf(" --check-every %d", w.CheckEvery)
		}
		if w.FsyncEvery > 0 {
			cmd += fmt.Sprintf(" --fsync-every %d", w.FsyncEvery)
		}
		if w.FdatasyncEvery > 0 {
			cmd += fmt.Sprintf(" --fdatasync-every %d", w.FdatasyncEvery)
		}
		if w.Epochs > 1 {
			cmd += fmt.Sprintf(" --epochs %d", w.Epochs)
		}
		jobs = append(jobs, job{name: fmt.Sprintf("writer-%d", i), cmd: cmd + " > " + guestTmp + fmt.Sprintf("/writer-%d.json", i) + " && cat " + guestTmp + fmt.Sprintf("/writer-%d.json", i)})
	}
	for i := 0; i < w.Defrag.Workers; i++ {
		cmd := fmt.Sprintf("%s defrag %s --id %d --donor-dir %s/d%d --duration %s --range-blocks %d",
			guestBin, r.common(rec.Seed), i, donorDir, i, dur, w.Defrag.RangeBlocks)
		if w.Defrag.Rejournal {
			cmd += " --rejournal"
		}
		if w.Defrag.Donor != "" {
			cmd += " --donor " + w.Defrag.Donor
		}
		if w.Defrag.EvictOneIn > 0 {
			cmd += fmt.Sprintf(" --evict-one-in %d", w.Defrag.EvictOneIn)
		}
		if w.Epochs > 1 {
			cmd += fmt.Sprintf(" --epochs %d", w.Epochs)
		}
		if w.Defrag.Tool == DefragE4defrag {
			cmd = fmt.Sprintf("%s e4defrag %s --id %d --duration %s", guestBin, r.common(rec.Seed), i, dur)
		}
		jobs = append(jobs, job{name: fmt.Sprintf("defrag-%d", i), cmd: fmt.Sprintf("mkdir -p %s/d%d && %s", donorDir, i, cmd), defrag: true})
	}
	outs := make([][]byte, len(jobs))
	errs := make([]error, len(jobs))
	var wg sync.WaitGroup
	for i, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i], errs[i] = g.sh(ctx, deadline, "", j.cmd)
		}()
	}
	wg.Wait()
	all := map[string]json.RawMessage{}
	var firstErr error
	for i, j := range jobs {
		if errs[i] != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("%s: %w", j.name, errs[i])
			}
			continue
		}
		all[j.name] = json.RawMessage(outs[i])
		if j.defrag {
			var d DefragResult
			if err := json.Unmarshal(outs[i], &d); err != nil {
				return fmt.Errorf("%s output: %w", j.name, err)
			}
			rec.Defrag = append(rec.Defrag, d)
		} else {
			var wr WriterResult
			if err := json.Unmarshal(outs[i], &wr); err != nil {
				return fmt.Errorf("%s output: %w", j.name, err)
			}
			rec.Writers = append(rec.Writers, wr)
		}
	}
	if err := g.saveJSON("workload.json", all); err != nil {
		return err
	}
	return firstErr
}

// verify checks every block live, after dropping the page cache, and after
// a remount; then e2fsck -fn on the unmounted disk.
func (r *Runner) verify(ctx context.Context, g *guest, rec *RunRecord) error {
	if r.Case.Workload.Kind == WorkloadFio {
		if err := r.fioVerify(ctx, g, rec); err != nil {
			return err
		}
		return r.fsck(ctx, g, rec)
	}
	w := r.Case.Workload
	expect := ""
	for i := 0; i < w.MmapWriters+w.PwriteWriters; i++ {
		expect += fmt.Sprintf(" --expect %s/writer-%d.json", guestTmp, i)
	}
	mount := fmt.Sprintf("mount -t ext4 -o %s %s %s", mountOpts(r.Case.Filesystem.MountOptions), scratchDev, mountPoint)
	steps := []struct{ phase, before string }{
		{"live", ""},
		{"dropcache", "sync && echo 3 > /proc/sys/vm/drop_caches"},
		{"remount", "umount " + mountPoint + " && " + mount},
	}
	results := map[string]json.RawMessage{}
	defer g.saveJSON("verify.json", results)
	for _, s := range steps {
		if s.before != "" {
			if _, err := g.sh(ctx, 5*time.Minute, "", s.before); err != nil {
				return err
			}
		}
		cmd := fmt.Sprintf("%s verify %s --phase %s --mmap%s", guestBin, r.common(rec.Seed), s.phase, expect)
		out, err := g.sh(ctx, 10*time.Minute, "", cmd)
		if err != nil {
			return err
		}
		results[s.phase] = json.RawMessage(out)
		var v VerifyResult
		if err := json.Unmarshal(out, &v); err != nil {
			return fmt.Errorf("verify %s output: %w", s.phase, err)
		}
		rec.Verify = append(rec.Verify, v)
	}
	return r.fsck(ctx, g, rec)
}

// fsck unmounts the scratch file system and runs e2fsck -fn on it.
func (r *Runner) fsck(ctx context.Context, g *guest, rec *RunRecord) error {
	if _, err := g.sh(ctx, 2*time.Minute, "", "umount "+mountPoint); err != nil {
		return err
	}
	// e2fsck exits 4 (or more) when it finds errors it did not fix.
	out, err := g.sh(ctx, 10*time.Minute, "fsck.txt", "e2fsck -fn "+scratchDev+"; echo \"e2fsck-exit=$?\"")
	if err != nil {
		return err
	}
	var code int
	if i := strings.LastIndex(string(out), "e2fsck-exit="); i >= 0 {
		fmt.Sscanf(string(out[i:]), "e2fsck-exit=%d", &code)
	} else {
		return errors.New("e2fsck: no exit status in its output")
	}
	rec.Fsck = &FsckResult{Exit: code, Clean: code == 0}
	return nil
}

func makeSparse(path string, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndex(s, "\n"); i >= 0 {
		return s[i+1:]
	}
	return s
}

// KeepInfo is what `patchbay ssh` needs to reach a kept VM: written to
// vm.json in the run directory, with a known_hosts file pinning the key.
type KeepInfo struct {
	Port    int    `json:"port"`
	Pid     int    `json:"qemu_pid"`
	KeyPath string `json:"key_path"`
}

func writeKeepInfo(dir string, m *vm.Machine, img *images.Image) error {
	known := fmt.Sprintf("[127.0.0.1]:%d %s\n", m.Port(), img.HostKey)
	if err := writeFileAtomic(filepath.Join(dir, "known_hosts"), []byte(known)); err != nil {
		return err
	}
	return writeJSON(filepath.Join(dir, "vm.json"), KeepInfo{Port: m.Port(), Pid: m.Pid(), KeyPath: img.KeyPath})
}
