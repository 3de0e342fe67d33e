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
	"sync/atomic"
	"time"

	"patchbay/casespec"
	"patchbay/images"
	"patchbay/kernel"
	"patchbay/record"
	"patchbay/safefile"
	"patchbay/triage"
	"patchbay/triage/symbolize"
	"patchbay/vm"
	"patchbay/workload/guestcmd"
	"patchbay/workload/iomapcheck"
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
	// Snapshots, when set, starts runs by restoring the kernel's saved VM
	// state (made by the kernel's first run) instead of booting cold.
	Snapshots *Snapshots
}

// RunOne runs variant's run number index with the given seed and kernel.
// It always returns a record with an outcome; the error is only for results
// that could not be written.
func (r *Runner) RunOne(ctx context.Context, variant string, index int, seed uint64, k *kernel.Artifact) (*record.RunRecord, error) {
	rel := filepath.Join(variant, fmt.Sprint(index))
	dir := filepath.Join(r.ResultsDir, rel)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("results directory: %w", err)
	}
	rec := &record.RunRecord{
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
func (r *Runner) execute(ctx context.Context, rec *record.RunRecord, dir string, k *kernel.Artifact) (st RunStatus, kept *vm.Machine) {
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
	disks, err := r.disks(scratchDir, scratch)
	if err != nil {
		st.Infra = err.Error()
		return st, nil
	}
	m, mk, err := r.startVM(ctx, rec, vm.Config{
		Kernel: k.BzImage, Cmdline: c.Kernel.Cmdline, RootImage: r.Image.Root,
		Disks: disks, MemoryMB: c.VM.MemoryMB, CPUs: c.VM.CPUs,
		Accel: r.Accel, WorkDir: dir, Signer: signer, HostKey: hostKey,
	}, k, scratchDir)
	if err != nil {
		st.Infra = err.Error()
		return st, nil
	}
	defer func() {
		rec.QMPEvents = m.Events()
		rec.ConsoleDropped = m.ConsoleDropped()
		rec.ConsoleTruncated = rec.ConsoleDropped > 0
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

	if rec.Start != StartRestore { // a restored VM is ready already
		bootCtx, cancel := context.WithTimeout(ctx, c.VM.BootTimeout.D())
		err = m.WaitReady(bootCtx)
		cancel()
	}
	if err != nil {
		if mk != nil {
			mk.abort("the boot failed")
		}
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
	r.logf("%s #%d: %s in %.1fs (%s)", rec.Variant, rec.Index, map[string]string{StartCold: "booted", StartRestore: "restored"}[rec.Start], rec.BootSecs, r.Accel)

	mark := func(name string) {
		rec.Phases = append(rec.Phases, record.PhaseStart{Name: name, AtS: time.Since(rec.Started).Seconds()})
	}
	mark("ready")
	g := &guest{m: m, dir: dir, before: r.BeforePhase, mark: mark}
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
	if mk != nil {
		if err := r.saveSnapshot(ctx, g, mk, rec, scratchDir); err != nil {
			return g.lost(ctx, st, err), nil
		}
	}
	// A guest that was saved needs the clock and a fresh random seed, at
	// the head of the setup phase's first session, before anything else.
	g.refresh = rec.Start == StartSnapshot || rec.Start == StartRestore
	if err := g.phase(ctx, "setup", true); err != nil {
		return g.lost(ctx, st, err), nil
	}
	if rec.Start == StartCold { // a snapshot has pbguest already
		if err := g.flush(ctx); err != nil {
			return g.lost(ctx, st, err), nil
		}
		if err := r.upload(ctx, g); err != nil {
			return g.lost(ctx, st, err), nil
		}
	}
	if s, err := r.setup(ctx, g, rec); err != nil {
		return g.lost(ctx, st, err), nil
	} else if s != "" {
		st.Setup = s
		return st, nil
	}
	if c.Workload.PowerCut != nil {
		return r.powerCut(ctx, g, rec, st, k, dir, disks), nil
	}
	if err := g.phase(ctx, "workload", false); err != nil {
		return g.lost(ctx, st, err), nil
	}
	wstart := time.Now()
	if err := r.workload(ctx, g, rec); err != nil {
		return g.lost(ctx, st, err), nil
	}
	rec.WorkloadSecs = time.Since(wstart).Seconds()
	if rec.BufferedIomap != nil {
		if err := iomapcheck.New(mountPoint).Stop(ctx, g, rec); err != nil {
			return g.lost(ctx, st, err), nil
		}
		r.logf("%s #%d: %s", rec.Variant, rec.Index, rec.BufferedIomap.Summary())
	}
	if err := g.phase(ctx, "verify", true); err != nil {
		return g.lost(ctx, st, err), nil
	}
	if err := r.verify(ctx, g, rec); err != nil {
		return g.lost(ctx, st, err), nil
	}
	if len(rec.Verify) != 3 {
		st.Incomplete = fmt.Sprintf("verify produced %d of 3 phases", len(rec.Verify))
	}
	if !g.dmesgSaved {
		if out, err := g.m.Output(ctx, "dmesg"); err == nil {
			g.save("dmesg.txt", out)
		}
	}
	mark("guest-done")
	return st, nil
}

// triage parses the console (it survives a dead SSH) and dmesg, keeping the
// first occurrence of each distinct finding.
func (r *Runner) triage(ctx context.Context, rec *record.RunRecord, dir string, console []byte, vmlinux string) {
	findings := triage.Parse(console)
	seen := map[string]bool{}
	for _, f := range findings {
		seen[string(f.Kind)+"\x00"+f.Title] = true
	}
	for _, name := range append([]string{"dmesg.txt"}, replayEvidence...) {
		text, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			continue
		}
		for _, f := range triage.Parse(text) {
			if k := string(f.Kind) + "\x00" + f.Title; !seen[k] {
				seen[k] = true
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
func symbolizeFindings(ctx context.Context, rec *record.RunRecord, vmlinux string) {
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
	m          *vm.Machine
	dir        string
	before     func(ctx context.Context, phase string, m *vm.Machine) error
	logf       func(format string, args ...any) // progress, prefixed with the run
	saveErr    error                            // first failure to write evidence: the host's fault
	refresh    bool                             // the first phase refreshes a restored guest first
	dmesgSaved bool                             // the verify batch saved dmesg.txt
	mark       func(phase string)               // records when a phase began (RunRecord.Phases)
	// pending are steps due at the start of the next batch: a phase's
	// marker and a restored guest's refresh, which ride in the phase's
	// first session instead of one of their own (see phase).
	pending []step
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

// phase writes a marker to the kernel log so findings can be placed; a
// restored guest is refreshed first (see refreshStep). With fold, both
// ride at the head of the phase's first batch, one SSH session less (each
// costs ~80 ms under TCG, the refresh its clock round trip too): a phase
// whose first step is one batch, so nothing of the phase runs before them.
// Without fold, or with a BeforePhase hook (which must see the phase
// begun), they run in a session of their own now.
func (g *guest) phase(ctx context.Context, name string, fold bool) error {
	if g.logf != nil {
		g.logf("phase %s", name)
	}
	if g.mark != nil {
		g.mark(name)
	}
	if g.refresh {
		g.refresh = false
		st, err := refreshStep()
		if err != nil {
			return err
		}
		g.pending = append(g.pending, st)
	}
	g.pending = append(g.pending, step{"phase " + name, fmt.Sprintf("echo 'patchbay: phase %s' > /dev/kmsg", name)})
	if fold && g.before == nil {
		return nil
	}
	if err := g.flush(ctx); err != nil {
		return err
	}
	if g.before != nil {
		return g.before(ctx, name, g.m)
	}
	return nil
}

// flush runs the pending steps now, in a session of their own.
func (g *guest) flush(ctx context.Context) error {
	if len(g.pending) == 0 {
		return nil
	}
	_, err := g.batch(ctx, time.Minute, nil)
	return err
}

// sh runs a command with a timeout, saving its output under name in the run
// directory when name is not empty.
func (g *guest) sh(ctx context.Context, timeout time.Duration, name, cmd string) ([]byte, error) {
	if err := g.flush(ctx); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var out, errb bytes.Buffer
	err := g.m.Run(ctx, cmd, nil, &out, &errb)
	if name != "" {
		g.save(name, append(out.Bytes(), errb.Bytes()...))
	}
	if err != nil {
		if msg := guestcmd.LastLine(errb.String()); msg != "" {
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
	f, err := safefile.Open(r.GuestBin)
	if err != nil {
		return fmt.Errorf("guest binary: %w", err)
	}
	defer f.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	return g.m.Upload(ctx, f, guestBin, 0o755)
}

// vmPaths are the runner's guest paths.
var vmPaths = guestcmd.Paths{Bin: guestBin, Dev: scratchDev, Mount: mountPoint, Tmp: guestTmp}

// commands are the run's guest command lines (see guestcmd.Build).
func (r *Runner) commands(seed uint64) guestcmd.Commands {
	return guestcmd.Build(r.Case.Workload, r.Case.Filesystem, seed, vmPaths)
}

// setup makes and mounts the file system and the work files. It returns a
// non-empty reason when the case's setup did not take effect.
func (r *Runner) setup(ctx context.Context, g *guest, rec *record.RunRecord) (string, error) {
	fs := r.Case.Filesystem
	gc := r.commands(rec.Seed)
	cmd := fmt.Sprintf("set -e; %s; mkdir -p %s; %s; mkdir -p %s %s %s",
		guestcmd.ShellJoin(gc.Mkfs), mountPoint, guestcmd.ShellJoin(gc.Mount), workDir, donorDir, guestTmp)
	prep := guestcmd.ShellJoin(gc.Prepare)
	if r.Case.Workload.Kind != casespec.WorkloadFio && !fs.CheckBufferedIomap {
		// One session for the file system, the work files and lsattr.
		steps := []step{{"setup.txt", cmd}, {"prepare.json", prep}}
		if fs.JournalData {
			steps = append(steps, step{"lsattr.txt", "lsattr " + workDir})
		}
		outs, err := g.batch(ctx, 7*time.Minute, steps)
		if err != nil {
			return "", err
		}
		return r.checkPrepared(rec, outs[1], outs[2:])
	}
	if _, err := g.sh(ctx, 2*time.Minute, "setup.txt", cmd); err != nil {
		return "", err
	}
	if r.Case.Workload.Kind == casespec.WorkloadFio {
		return "", nil // fio lays out its own files
	}
	trace := iomapcheck.New(mountPoint)
	if fs.CheckBufferedIomap {
		if reason, err := trace.Start(ctx, g, rec); err != nil || reason != "" {
			return reason, err
		}
	}
	out, err := g.sh(ctx, 5*time.Minute, "", prep)
	if err != nil {
		return "", err
	}
	g.save("prepare.json", out)
	if reason, err := r.checkPrepared(rec, out, nil); err != nil {
		return reason, err
	}
	if fs.CheckBufferedIomap {
		if reason, err := trace.SetupDone(ctx, g, rec, guestcmd.MountOpts(fs.MountOptions), fs.RequireLargeFolios); err != nil || reason != "" {
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
	return r.checkPrepared(rec, out, [][]byte{lsattr})
}

// checkPrepared reads prepare's JSON into rec and, given lsattr's output,
// checks that every work file journals its data when the case asks for it.
func (r *Runner) checkPrepared(rec *record.RunRecord, prepare []byte, lsattr [][]byte) (string, error) {
	var p struct {
		JournalDataFiles int `json:"journal_data_files"`
	}
	if err := json.Unmarshal(prepare, &p); err != nil {
		return "", fmt.Errorf("prepare output: %w", err)
	}
	rec.JournalDataFiles = p.JournalDataFiles
	if !r.Case.Filesystem.JournalData || len(lsattr) == 0 {
		return "", nil
	}
	flagged := 0
	for _, line := range strings.Split(string(lsattr[0]), "\n") {
		if attrs, _, ok := strings.Cut(line, " "); ok && strings.Contains(attrs, "j") {
			flagged++
		}
	}
	if p.JournalDataFiles != r.Case.Workload.Files || flagged != r.Case.Workload.Files {
		return fmt.Sprintf("data journaling set on %d (ioctl) / %d (lsattr) of %d files", p.JournalDataFiles, flagged, r.Case.Workload.Files), nil
	}
	return "", nil
}

// mountCommand mounts the scratch disk with the case's options, quoted.
func mountCommand(opts string) string {
	return guestcmd.ShellJoin([]string{"mount", "-t", "ext4", "-o", guestcmd.MountOpts(opts), scratchDev, mountPoint})
}

// workload starts every writer and defrag worker in its own SSH session at
// once and waits for all of them.
func (r *Runner) workload(ctx context.Context, g *guest, rec *record.RunRecord) error {
	if r.Case.Workload.Kind == casespec.WorkloadFio {
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
	for _, j := range r.commands(rec.Seed).Jobs {
		cmd := guestcmd.ShellJoin(j.Argv)
		if j.Defrag {
			cmd = "mkdir -p " + guestcmd.ShellQuote(j.MkdirDonors) + " && " + cmd
		} else {
			out := guestcmd.ShellQuote(j.Result)
			cmd += " > " + out + " && cat " + out
		}
		jobs = append(jobs, job{name: j.Name, cmd: cmd, defrag: j.Defrag})
	}
	outs := make([][]byte, len(jobs))
	errs := make([]error, len(jobs))
	// A kernel that reported a hang and lets no worker finish ends the run
	// HangGrace after the workload's end, not at the deadline.
	wctx, stopWork := context.WithCancel(ctx)
	defer stopWork()
	var hung atomic.Pointer[string]
	go watchHang(wctx, g.m.Console, len(g.m.Console()), time.Now().Add(dur), HangGrace, time.Second, func(why string) {
		hung.Store(&why)
		stopWork()
	})
	var wg sync.WaitGroup
	for i, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i], errs[i] = g.sh(wctx, deadline, "", j.cmd)
		}()
	}
	wg.Wait()
	stopWork()
	if why := hung.Load(); why != nil && ctx.Err() == nil {
		// lost() calls a deadline with the VM alive a hang.
		return fmt.Errorf("workload: %w: %s", context.DeadlineExceeded, *why)
	}
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
			var d record.DefragResult
			if err := json.Unmarshal(outs[i], &d); err != nil {
				return fmt.Errorf("%s output: %w", j.name, err)
			}
			rec.Defrag = append(rec.Defrag, d)
		} else {
			var wr record.WriterResult
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
func (r *Runner) verify(ctx context.Context, g *guest, rec *record.RunRecord) error {
	if r.Case.Workload.Kind == casespec.WorkloadFio {
		if err := r.fioVerify(ctx, g, rec); err != nil {
			return err
		}
		return r.fsck(ctx, g, rec)
	}
	results := map[string]json.RawMessage{}
	defer g.saveJSON("verify.json", results)
	return r.verifyBatch(ctx, g, rec, results)
}

// verifyBatch runs the three verify passes, e2fsck and dmesg in one SSH
// session: the steps are sequential anyway, and each session costs a fork
// and an exec in the guest (and a round trip).
func (r *Runner) verifyBatch(ctx context.Context, g *guest, rec *record.RunRecord, results map[string]json.RawMessage) error {
	gc := r.commands(rec.Seed)
	var steps []step
	verifyAt := map[int]string{}
	for _, s := range gc.Verify {
		var before []string
		if s.DropCaches {
			before = append(before, "sync && echo 3 > /proc/sys/vm/drop_caches")
		}
		for _, argv := range s.Before {
			before = append(before, guestcmd.ShellJoin(argv))
		}
		if len(before) > 0 {
			steps = append(steps, step{"", strings.Join(before, " && ")})
		}
		verifyAt[len(steps)] = s.Phase
		steps = append(steps, step{"", guestcmd.ShellJoin(s.Argv)})
	}
	steps = append(steps,
		step{"", guestcmd.ShellJoin(gc.Umount)},
		// e2fsck exits 4 (or more) when it finds errors it did not fix.
		step{"fsck.txt", guestcmd.ShellJoin(gc.Fsck) + " 2>&1; echo \"e2fsck-exit=$?\""},
		step{"dmesg.txt", "dmesg"})
	// As long as the longest step alone may take: a hang is still a hang.
	outs, err := g.batch(ctx, 10*time.Minute, steps)
	for i, out := range outs {
		phase, ok := verifyAt[i]
		if !ok {
			continue
		}
		results[phase] = json.RawMessage(out)
		var v record.VerifyResult
		if err := json.Unmarshal(out, &v); err != nil {
			return fmt.Errorf("verify %s output: %w", phase, err)
		}
		rec.Verify = append(rec.Verify, v)
	}
	if err != nil {
		return err
	}
	g.dmesgSaved = true
	return parseFsck(rec, outs[len(outs)-2])
}

// parseFsck reads e2fsck's exit status from the line the command appends.
func parseFsck(rec *record.RunRecord, out []byte) error {
	var code int
	if i := strings.LastIndex(string(out), "e2fsck-exit="); i >= 0 {
		fmt.Sscanf(string(out[i:]), "e2fsck-exit=%d", &code)
	} else {
		return errors.New("e2fsck: no exit status in its output")
	}
	rec.Fsck = &record.FsckResult{Exit: code, Clean: code == 0}
	return nil
}

// fsck unmounts the scratch file system and runs e2fsck -fn on it.
func (r *Runner) fsck(ctx context.Context, g *guest, rec *record.RunRecord) error {
	if _, err := g.sh(ctx, 2*time.Minute, "", "umount "+mountPoint); err != nil {
		return err
	}
	// e2fsck exits 4 (or more) when it finds errors it did not fix.
	out, err := g.sh(ctx, 10*time.Minute, "fsck.txt", guestcmd.ShellJoin(r.commands(rec.Seed).Fsck)+"; echo \"e2fsck-exit=$?\"")
	if err != nil {
		return err
	}
	return parseFsck(rec, out)
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
