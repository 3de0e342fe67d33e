package harness

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"patchbay/casespec"
	pbguest "patchbay/guest"
	"patchbay/kernel"
	"patchbay/record"
	"patchbay/vm"
	"patchbay/workload/guestcmd"
)

// validatePowerCut checks workload.power_cut against the rest of the case.
func (c *Case) validatePowerCut(bad func(field, msg string)) {
	w := &c.Workload
	pc := w.PowerCut
	if pc == nil {
		return
	}
	if err := pc.Parse(); err != nil {
		bad("workload.power_cut.after", err.Error())
		return
	}
	if w.Kind != casespec.WorkloadPatchbay {
		bad("workload.power_cut", "needs the patchbay workload: its writers record what they acknowledged")
	}
	_, hi := pc.Window()
	// The writers must still be writing when the cut comes (they start a
	// second or two after the workload phase begins).
	if w.Duration.D() < hi+5*time.Second {
		bad("workload.duration", fmt.Sprintf("%s: a power cut at up to %s needs a duration of at least %s", w.Duration.D(), hi, hi+5*time.Second))
	}
	syncs := (w.MmapWriters > 0 && w.MsyncEvery > 0) || (w.PwriteWriters > 0 && (w.FsyncEvery > 0 || w.FdatasyncEvery > 0))
	if !syncs {
		bad("workload.power_cut", "nothing is acknowledged without syncs: set msync_every (mmap writers) or fsync_every / fdatasync_every")
	}
	for _, name := range c.VariantNames() {
		e := c.Variants[name].Expect
		if e.MinMoved != nil || e.MaxMoved != nil || e.MinRefusedEOPNOTSUPP != nil || e.MinTransitions != nil || e.MinFilesMoved != nil {
			bad("variants."+name+".expect", "workload.power_cut: the defrag workers die in the cut, so moves and refusals are not counted; expect max_bad_blocks, fsck_clean, no_findings")
		}
	}
}

// disks makes the run's raw disks: the scratch disk, and for a power cut
// the ack disk beside it (sparse: zeros until a writer acknowledges).
func (r *Runner) disks(scratchDir, scratch string) ([]string, error) {
	if r.Case.Workload.PowerCut == nil {
		return []string{scratch}, nil
	}
	w := r.Case.Workload
	size := pbguest.AckDiskSize(pbguest.Layout{Files: w.Files, Blocks: w.Blocks, BlockSize: 4096, Writers: w.MmapWriters + w.PwriteWriters})
	ack := filepath.Join(scratchDir, "acks.raw")
	if err := makeSparse(ack, (size+1<<20-1)/(1<<20)*(1<<20)); err != nil {
		return nil, fmt.Errorf("ack disk: %w", err)
	}
	return []string{scratch, ack}, nil
}

// powerCut runs the workload, cuts the VM at the seeded moment, and checks
// the disks in a second boot of the same kernel. It replaces the workload
// and verify phases of an ordinary run.
func (r *Runner) powerCut(ctx context.Context, g *guest, rec *record.RunRecord, st RunStatus, k *kernel.Artifact, dir string, disks []string) RunStatus {
	pc := r.Case.Workload.PowerCut
	after := pc.Moment(rec.Seed)
	rec.PowerCut = &record.PowerCutResult{AfterS: after.Seconds()}
	// prepare wrote generation 0 everywhere: make it durable, so that 0 is
	// the floor of every block nobody acknowledged.
	if _, err := g.sh(ctx, 2*time.Minute, "", "sync"); err != nil {
		return g.lost(ctx, st, err)
	}
	if err := g.phase(ctx, "workload", false); err != nil {
		return g.lost(ctx, st, err)
	}
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- r.workload(ctx, g, rec) }()
	timer := time.NewTimer(after)
	defer timer.Stop()
	select {
	case err := <-done:
		if err != nil {
			return g.lost(ctx, st, err)
		}
		st.Incomplete = fmt.Sprintf("the workload ended after %s, before the power cut at %s", time.Since(start).Round(time.Second), after)
		return st
	case <-g.m.Halted():
		// A panic before the cut is the kernel's: judge it as such.
		err := <-done
		if err == nil {
			err = vm.ErrPanicked
		}
		return g.lost(ctx, st, err)
	case <-timer.C:
	}
	if g.logf != nil {
		g.logf("power cut at %s", time.Since(start).Round(100*time.Millisecond))
	}
	if err := g.m.PowerCut(); err != nil {
		// QEMU went away on its own just before: say how.
		return g.lost(ctx, st, fmt.Errorf("%w: %v", <-done, err))
	}
	rec.PowerCut.CutS = time.Since(start).Seconds()
	<-done // every session ends with the VM
	return r.replay(ctx, g, rec, st, k, dir, disks)
}

// replay boots the same kernel on the same disks, mounts the scratch file
// system (journal replay), checks every block against the acknowledged
// generations, and runs e2fsck. Its console and QEMU log are in replay/.
func (r *Runner) replay(ctx context.Context, g0 *guest, rec *record.RunRecord, st RunStatus, k *kernel.Artifact, dir string, disks []string) RunStatus {
	c := r.Case
	signer, err := r.Image.Signer()
	if err != nil {
		st.Infra = err.Error()
		return st
	}
	hostKey, err := r.Image.HostPublicKey()
	if err != nil {
		st.Infra = err.Error()
		return st
	}
	t0 := time.Now()
	m, err := vm.Start(ctx, vm.Config{
		Kernel: k.BzImage, Cmdline: c.Kernel.Cmdline, RootImage: r.Image.Root,
		Disks: disks, MemoryMB: c.VM.MemoryMB, CPUs: c.VM.CPUs,
		Accel: r.Accel, WorkDir: filepath.Join(dir, "replay"), Signer: signer, HostKey: hostKey,
	})
	if err != nil {
		st.Infra = "after the power cut: " + err.Error()
		return st
	}
	defer m.Close()
	bootCtx, cancel := context.WithTimeout(ctx, c.VM.BootTimeout.D())
	err = m.WaitReady(bootCtx)
	cancel()
	if err != nil {
		switch {
		case ctx.Err() != nil:
			st.Interrupted = true
		case errors.Is(err, vm.ErrPanicked):
			st.Panicked = true
		default:
			st.Boot = "second boot after the power cut: " + err.Error()
		}
		return st
	}
	rec.PowerCut.ReplayBootS = time.Since(t0).Seconds()
	g := &guest{m: m, dir: dir, before: r.BeforePhase, logf: g0.logf, mark: g0.mark}
	defer func() {
		if g.saveErr != nil && st.Infra == "" {
			st.Infra = "writing results: " + g.saveErr.Error()
		}
	}()
	if err := g.phase(ctx, "replay", false); err != nil {
		return g.lost(ctx, st, err)
	}
	if err := r.upload(ctx, g); err != nil {
		return g.lost(ctx, st, err)
	}
	gc := r.commands(rec.Seed)
	mount := "mkdir -p " + guestcmd.ShellQuote(mountPoint) + " && " + guestcmd.ShellJoin(gc.Mount)
	if _, err := g.sh(ctx, 5*time.Minute, "replay-mount.txt", mount); err != nil {
		return g.lost(ctx, st, err)
	}
	if out, err := g.sh(ctx, time.Minute, "", "dmesg"); err == nil {
		g.save("replay-dmesg.txt", out)
		rec.PowerCut.JournalRecovered = strings.Contains(string(out), "recovery complete")
	}
	out, err := g.sh(ctx, 10*time.Minute, "", guestcmd.ShellJoin(gc.VerifyAcks))
	if err != nil {
		return g.lost(ctx, st, err)
	}
	g.saveJSON("verify.json", map[string]json.RawMessage{guestcmd.ReplayPhase: out})
	var v struct {
		record.VerifyResult
		Acks *pbguest.AckStats `json:"acks"`
	}
	if err := json.Unmarshal(out, &v); err != nil || v.Acks == nil {
		st.Incomplete = fmt.Sprintf("verify after the power cut: no result (%v)", err)
		return st
	}
	rec.Verify = append(rec.Verify, v.VerifyResult)
	rec.PowerCut.AckRecords, rec.PowerCut.AckedBlocks, rec.PowerCut.MaxAckedGen = v.Acks.Records, v.Acks.AckedBlocks, v.Acks.MaxGen
	if err := r.fsck(ctx, g, rec); err != nil {
		return g.lost(ctx, st, err)
	}
	if out, err := g.sh(ctx, time.Minute, "", "dmesg"); err == nil {
		g.save("replay-dmesg.txt", out)
	}
	g.mark("guest-done")
	if v.Acks.Records == 0 {
		// Nothing was acknowledged, so nothing was checked: not a pass.
		st.Incomplete = fmt.Sprintf("no fsync or msync was acknowledged before the cut at %.1fs", rec.PowerCut.CutS)
	}
	return st
}

// replayEvidence are the run-directory files of the second boot that
// triage reads besides the first boot's console and dmesg.
var replayEvidence = []string{"replay-dmesg.txt", filepath.Join("replay", "console.log")}
