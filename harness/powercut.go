package harness

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	pbguest "patchbay/guest"
	"patchbay/kernel"
	"patchbay/vm"
)

// ackDev is the guest device of the ack disk in power-cut runs: the
// second raw disk, after the scratch disk.
const ackDev = "/dev/vdc"

// replayPhase names the verify pass after the power cut.
const replayPhase = "replay"

// PowerCutSpec asks for a power cut under load: at a moment drawn from the
// run's seed within After ("5s..15s", or one duration), measured from the
// start of the workload, the VM is cut without a sync, booted again on the
// same disks, the file system mounted (journal replay), every block checked
// against the generations the writers had acknowledged by fsync/msync,
// and e2fsck run. The workers die in the cut, so moves and refusals are
// not counted.
type PowerCutSpec struct {
	After string `yaml:"after"`

	lo, hi time.Duration // parsed from After by validate
}

// parseAfter reads "A..B" or "A".
func (p *PowerCutSpec) parseAfter() error {
	a, b, isRange := strings.Cut(p.After, "..")
	if !isRange {
		b = a
	}
	lo, err1 := time.ParseDuration(strings.TrimSpace(a))
	hi, err2 := time.ParseDuration(strings.TrimSpace(b))
	switch {
	case p.After == "":
		return errors.New("missing: a moment like 10s or a range like 5s..15s")
	case err1 != nil || err2 != nil:
		return fmt.Errorf("%q: want a duration like 10s or a range like 5s..15s", p.After)
	case lo <= 0 || hi < lo:
		return fmt.Errorf("%q: want 0 < start <= end", p.After)
	}
	p.lo, p.hi = lo, hi
	return nil
}

// Moment is the run's cut time after the workload starts: lo plus a
// seed-derived offset in whole milliseconds, so a seed reproduces its cut.
func (p *PowerCutSpec) Moment(seed uint64) time.Duration {
	span := uint64((p.hi - p.lo) / time.Millisecond)
	if span == 0 {
		return p.lo
	}
	return p.lo + time.Duration(splitmix64(seed^0x706f776572637574)%(span+1))*time.Millisecond
}

func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// validatePowerCut checks workload.power_cut against the rest of the case.
func (c *Case) validatePowerCut(bad func(field, msg string)) {
	w := &c.Workload
	pc := w.PowerCut
	if pc == nil {
		return
	}
	if err := pc.parseAfter(); err != nil {
		bad("workload.power_cut.after", err.Error())
		return
	}
	if w.Kind != WorkloadPatchbay {
		bad("workload.power_cut", "needs the patchbay workload: its writers record what they acknowledged")
	}
	// The writers must still be writing when the cut comes (they start a
	// second or two after the workload phase begins).
	if w.Duration.D() < pc.hi+5*time.Second {
		bad("workload.duration", fmt.Sprintf("%s: a power cut at up to %s needs a duration of at least %s", w.Duration.D(), pc.hi, pc.hi+5*time.Second))
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

// PowerCutResult is what a power-cut run recorded (run.json power_cut).
type PowerCutResult struct {
	AfterS           float64 `json:"after_s"`           // the seeded moment, from the start of the workload
	CutS             float64 `json:"cut_s"`             // when the cut came, same origin
	ReplayBootS      float64 `json:"replay_boot_s"`     // QEMU start to SSH, second boot
	JournalRecovered bool    `json:"journal_recovered"` // the mount said "recovery complete"
	AckRecords       uint64  `json:"ack_records"`       // syncs acknowledged before the cut
	AckedBlocks      int     `json:"acked_blocks"`      // blocks with an acknowledged generation > 0
	MaxAckedGen      int64   `json:"max_acked_gen"`
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
func (r *Runner) powerCut(ctx context.Context, g *guest, rec *RunRecord, st RunStatus, k *kernel.Artifact, dir string, disks []string) RunStatus {
	pc := r.Case.Workload.PowerCut
	after := pc.Moment(rec.Seed)
	rec.PowerCut = &PowerCutResult{AfterS: after.Seconds()}
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
func (r *Runner) replay(ctx context.Context, g0 *guest, rec *RunRecord, st RunStatus, k *kernel.Artifact, dir string, disks []string) RunStatus {
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
	g := &guest{m: m, dir: dir, before: r.BeforePhase, logf: g0.logf}
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
	mount := "mkdir -p " + ShellQuote(mountPoint) + " && " + ShellJoin(gc.Mount)
	if _, err := g.sh(ctx, 5*time.Minute, "replay-mount.txt", mount); err != nil {
		return g.lost(ctx, st, err)
	}
	if out, err := g.sh(ctx, time.Minute, "", "dmesg"); err == nil {
		g.save("replay-dmesg.txt", out)
		rec.PowerCut.JournalRecovered = strings.Contains(string(out), "recovery complete")
	}
	out, err := g.sh(ctx, 10*time.Minute, "", ShellJoin(gc.VerifyAcks))
	if err != nil {
		return g.lost(ctx, st, err)
	}
	g.saveJSON("verify.json", map[string]json.RawMessage{replayPhase: out})
	var v struct {
		VerifyResult
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
	if v.Acks.Records == 0 {
		// Nothing was acknowledged, so nothing was checked: not a pass.
		st.Incomplete = fmt.Sprintf("no fsync or msync was acknowledged before the cut at %.1fs", rec.PowerCut.CutS)
	}
	return st
}

// replayEvidence are the run-directory files of the second boot that
// triage reads besides the first boot's console and dmesg.
var replayEvidence = []string{"replay-dmesg.txt", filepath.Join("replay", "console.log")}
