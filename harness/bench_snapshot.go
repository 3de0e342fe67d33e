package harness

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"patchbay/casespec"
	"patchbay/record"
	"patchbay/vm"
)

// RestoreSample is one restore of a snapshot: from starting QEMU to the
// first SSH login, and to the guest's clock and random seed refreshed.
type RestoreSample struct {
	Ready     time.Duration `json:"ready"`
	Refreshed time.Duration `json:"refreshed"`
	Steps     RestoreSteps  `json:"steps"`
}

// BenchRestore restores the snapshot of the kernel BenchBoot measures n
// times (making the snapshot first with one short run if there is none).
func BenchRestore(ctx context.Context, c *Case, opt Options, n int) ([]RestoreSample, error) {
	k, img, err := benchInputs(ctx, c, opt)
	if err != nil {
		return nil, err
	}
	guestBin, err := ensureGuest(ctx, opt)
	if err != nil {
		return nil, err
	}
	accel := opt.Accel
	if accel == "" || accel == "auto" {
		accel, _ = vm.ProbeAccel(ctx, "", k.BzImage)
	}
	results, err := os.MkdirTemp("", "pbbench")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(results)
	r := &Runner{Case: c, Image: img, GuestBin: guestBin, Accel: accel, ResultsDir: results,
		Progress: opt.Progress, Snapshots: NewSnapshots(opt.CacheDir, false)}
	want, err := r.Snapshots.key(c, k, img, guestBin, accel)
	if err != nil {
		return nil, err
	}
	snap, _, _ := r.Snapshots.get(want, img)
	if snap == nil {
		// The first run of a kernel saves its snapshot; a short one will do.
		short := *c
		short.Workload.Duration = casespec.Duration(2 * time.Second)
		r.Case = &short
		rec, err := r.RunOne(ctx, c.VariantNames()[0], 0, opt.Seed, k)
		r.Case = c
		if err != nil {
			return nil, err
		}
		if snap, _, _ = r.Snapshots.get(want, img); snap == nil {
			return nil, fmt.Errorf("no snapshot after a run (%s, start %s): %v", rec.Outcome, rec.Start, rec.Reasons)
		}
	}
	signer, err := img.Signer()
	if err != nil {
		return nil, err
	}
	hostKey, err := img.HostPublicKey()
	if err != nil {
		return nil, err
	}
	var samples []RestoreSample
	for i := 0; i < n; i++ {
		s, err := benchOneRestore(ctx, r, snap, vm.Config{
			Kernel: k.BzImage, Cmdline: c.Kernel.Cmdline, RootImage: img.Root,
			MemoryMB: c.VM.MemoryMB, CPUs: c.VM.CPUs, Accel: accel, Signer: signer, HostKey: hostKey,
		})
		if err != nil {
			return samples, err
		}
		samples = append(samples, s)
	}
	return samples, nil
}

func benchOneRestore(ctx context.Context, r *Runner, snap *snapshot, cfg vm.Config) (RestoreSample, error) {
	dir, err := os.MkdirTemp("", "pbscratch")
	if err != nil {
		return RestoreSample{}, err
	}
	defer os.RemoveAll(dir)
	scratch := filepath.Join(dir, "scratch.raw")
	if err := makeSparse(scratch, int64(r.Case.VM.ScratchMB)<<20); err != nil {
		return RestoreSample{}, err
	}
	cfg.Disks, cfg.WorkDir = []string{scratch}, dir
	start := time.Now()
	var steps RestoreSteps
	m, err := r.restore(ctx, cfg, snap, dir, &steps)
	if err != nil {
		return RestoreSample{}, err
	}
	defer m.Close()
	s := RestoreSample{Ready: time.Since(start), Steps: steps}
	if err := refreshGuest(ctx, m); err != nil {
		return s, err
	}
	s.Refreshed = time.Since(start)
	return s, nil
}

// DutySample is what a session of runs spent on its workload: the runs'
// configured workload seconds, the workload phases' wall time, and the runs'
// wall time (from the run's start to its verdict).
type DutySample struct {
	Runs         int
	Workload     time.Duration // runs x the configured duration
	WorkloadWall time.Duration // sum of the workload phases
	Wall         time.Duration // sum of the runs' wall time
	Session      time.Duration // the whole session, builds (cached) and probes included
	Skipped      int           // runs that did not start as asked (the run saving the snapshot)
	Steps        []Step        // mean time of each step of a run, in run order
}

// Step is the mean wall time of one step of the runs: "start" (to SSH
// ready), then each phase from its start to the next one's ("ready" is
// what comes before the setup phase, e.g. uploading pbguest or saving the
// snapshot), and "teardown" from the guest's last step to the verdict
// (closing QEMU, triage, run.json).
type Step struct {
	Name string
	Mean time.Duration
}

// stepTimes averages the runs' steps (RunRecord.Phases); a run without
// phases is left out.
func stepTimes(runs []*record.RunRecord) []Step {
	var order []string
	sum := map[string]float64{}
	n := map[string]int{}
	add := func(name string, secs float64) {
		if _, ok := sum[name]; !ok {
			order = append(order, name)
		}
		sum[name] += secs
		n[name]++
	}
	for _, r := range runs {
		if len(r.Phases) == 0 {
			continue
		}
		add("start", r.Phases[0].AtS)
		for i, p := range r.Phases {
			if p.Name == "guest-done" {
				add("teardown", r.Seconds-p.AtS)
				break
			}
			end := r.Seconds
			if i+1 < len(r.Phases) {
				end = r.Phases[i+1].AtS
			}
			add(p.Name, end-p.AtS)
		}
	}
	steps := make([]Step, len(order))
	for i, name := range order {
		steps[i] = Step{name, time.Duration(sum[name] / float64(n[name]) * float64(time.Second))}
	}
	return steps
}

// Duty is workload seconds per run wall second.
func (d DutySample) Duty() float64 { return d.Workload.Seconds() / d.Wall.Seconds() }

// BenchDuty runs the case's baseline runs times booting cold, then runs
// times restoring its snapshot (a run that has to save the snapshot first is
// left out of the restore numbers and counted in Skipped).
func BenchDuty(ctx context.Context, c *Case, opt Options, runs int) (cold, restore DutySample, err error) {
	name := c.VariantNames()[0]
	results, err := os.MkdirTemp("", "pbbench")
	if err != nil {
		return cold, restore, err
	}
	defer os.RemoveAll(results)
	if _, _, err := benchInputs(ctx, c, opt); err != nil {
		return cold, restore, err
	}
	dur := c.Workload.Duration.D()
	if opt.Duration > 0 {
		dur = opt.Duration
	}
	for _, mode := range []string{StartCold, StartRestore} {
		o := opt
		o.Variants, o.Runs, o.Jobs, o.Cold = []string{name}, runs, 1, mode == StartCold
		o.ResultsDir = filepath.Join(results, mode)
		start := time.Now()
		sum, err := RunCase(ctx, c, o)
		if err != nil {
			return cold, restore, err
		}
		d := DutySample{Session: time.Since(start)}
		var counted []*record.RunRecord
		for _, r := range sum.Variants[0].Runs {
			if r.Outcome == record.InfraError || r.Outcome == record.BootError || r.Outcome == record.Interrupted {
				return cold, restore, fmt.Errorf("%s: run %d: %s %v", mode, r.Index, r.Outcome, r.Reasons)
			}
			if r.Start != mode {
				d.Skipped++
				continue
			}
			d.Runs++
			d.Workload += dur
			d.WorkloadWall += time.Duration(r.WorkloadSecs * float64(time.Second))
			d.Wall += time.Duration(r.Seconds * float64(time.Second))
			counted = append(counted, r)
		}
		d.Steps = stepTimes(counted)
		if d.Runs == 0 {
			return cold, restore, fmt.Errorf("%s: no run started %s", mode, mode)
		}
		if mode == StartCold {
			cold = d
		} else {
			restore = d
		}
	}
	return cold, restore, nil
}
