package harness

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"patchbay/images"
	"patchbay/kernel"
	"patchbay/record"
	"patchbay/safefile"
	"patchbay/vm"
)

// BootSample is one measured boot: from QEMU's start to the kernel starting
// init (printed on the console), and to the first successful SSH login.
type BootSample struct {
	Init     time.Duration `json:"init"`
	Ready    time.Duration `json:"ready"`
	FirstCmd time.Duration `json:"first_command"` // first `true` over a session
	Upload   time.Duration `json:"upload"`        // the 4 MB guest binary
}

// BenchBoot boots the case's first variant's kernel n times and measures
// ready-to-SSH against the raw boot to init with the same QEMU flags.
func BenchBoot(ctx context.Context, c *Case, opt Options, n int) ([]BootSample, error) {
	k, img, err := benchInputs(ctx, c, opt)
	if err != nil {
		return nil, err
	}
	signer, err := img.Signer()
	if err != nil {
		return nil, err
	}
	hostKey, err := img.HostPublicKey()
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
	var samples []BootSample
	for i := 0; i < n; i++ {
		dir, err := os.MkdirTemp("", "pbbench")
		if err != nil {
			return nil, err
		}
		s, err := benchOneBoot(ctx, c, vm.Config{
			Kernel: k.BzImage, Cmdline: c.Kernel.Cmdline, RootImage: img.Root,
			MemoryMB: c.VM.MemoryMB, CPUs: c.VM.CPUs, Accel: accel, WorkDir: dir,
			Signer: signer, HostKey: hostKey,
		}, guestBin)
		os.RemoveAll(dir)
		if err != nil {
			return samples, err
		}
		samples = append(samples, s)
	}
	return samples, nil
}

func benchOneBoot(ctx context.Context, c *Case, cfg vm.Config, guestBin string) (BootSample, error) {
	start := time.Now()
	m, err := vm.Start(ctx, cfg)
	if err != nil {
		return BootSample{}, err
	}
	defer m.Close()
	bctx, cancel := context.WithTimeout(ctx, c.VM.BootTimeout.D())
	defer cancel()
	var s BootSample
	if err := m.WaitConsole(bctx, "Run /sbin/patchbay-init as init process"); err != nil {
		return s, fmt.Errorf("waiting for init: %w", err)
	}
	s.Init = time.Since(start)
	if err := m.WaitReady(bctx); err != nil {
		return s, err
	}
	s.Ready = time.Since(start)
	if _, err := m.Output(bctx, "true"); err != nil {
		return s, err
	}
	s.FirstCmd = time.Since(start)
	if guestBin != "" {
		f, err := safefile.Open(guestBin)
		if err != nil {
			return s, err
		}
		defer f.Close()
		t := time.Now()
		if err := m.Upload(bctx, f, "/tmp/pbguest", 0o755); err != nil {
			return s, err
		}
		s.Upload = time.Since(t)
	}
	return s, nil
}

// benchInputs builds (or finds) the first variant's kernel and the image.
func benchInputs(ctx context.Context, c *Case, opt Options) (*kernel.Artifact, *images.Image, error) {
	specs, err := c.KernelSpecs(c.VariantNames()[:1])
	if err != nil {
		return nil, nil, err
	}
	k, err := (&kernel.Builder{CacheDir: opt.CacheDir, Progress: opt.Progress}).Build(ctx, specs[0])
	if err != nil {
		return nil, nil, err
	}
	img, err := (&images.Builder{CacheDir: opt.CacheDir, Progress: opt.Progress}).Ensure(ctx, images.DefaultRecipe())
	if err != nil {
		return nil, nil, err
	}
	return k, img, nil
}

// BenchJobs runs runs runs of the case's baseline variant with jobs=1 and
// with jobs=2 and returns the wall time of each, for the runs/hour ratio.
func BenchJobs(ctx context.Context, c *Case, opt Options, runs int) (one, two time.Duration, err error) {
	name := c.VariantNames()[0]
	results, err := os.MkdirTemp("", "pbbench")
	if err != nil {
		return 0, 0, err
	}
	defer os.RemoveAll(results)
	// Build everything first so neither measurement pays for it.
	if _, _, err := benchInputs(ctx, c, opt); err != nil {
		return 0, 0, err
	}
	for _, jobs := range []int{1, 2} {
		o := opt
		o.Variants, o.Runs, o.Jobs = []string{name}, runs, jobs
		o.ResultsDir = filepath.Join(results, fmt.Sprint(jobs))
		start := time.Now()
		sum, err := RunCase(ctx, c, o)
		if err != nil {
			return 0, 0, err
		}
		for _, r := range sum.Variants[0].Runs {
			if r.Outcome == record.InfraError || r.Outcome == record.BootError {
				return 0, 0, fmt.Errorf("jobs=%d: run %d: %s %v", jobs, r.Index, r.Outcome, r.Reasons)
			}
		}
		if jobs == 1 {
			one = time.Since(start)
		} else {
			two = time.Since(start)
		}
	}
	return one, two, nil
}
