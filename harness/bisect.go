package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"time"

	"patchbay/casespec"
	"patchbay/images"
	"patchbay/kernel"
	"patchbay/record"
	"patchbay/vm"
)

// BisectOracle runs single runs of one variant's workload and expectations
// on kernels built from prefixes of its patch stack (each prefix an
// incremental, cached build), for package bisect. A run "fails" when it
// ends fail, crash or hang; infra errors, boot errors and interruptions
// measured nothing and are returned as errors.
type BisectOracle struct {
	Stack []string // the variant's patch stack, as kernel patch refs

	c        *Case
	variant  string
	spec     kernel.Spec
	kb       *kernel.Builder
	runner   *Runner
	seed     uint64
	progress io.Writer
	kernels  map[int]*kernel.Artifact
	Records  map[int][]*record.RunRecord // per prefix, the runs so far
}

// NewBisectOracle prepares the image, the guest binary and the acceleration
// for bisecting variant; runs go under opt.ResultsDir/<case>-bisect/<time>/.
func NewBisectOracle(ctx context.Context, c *Case, variant string, opt Options) (*BisectOracle, error) {
	specs, err := c.KernelSpecs([]string{variant})
	if err != nil {
		return nil, err
	}
	guestBin, err := ensureGuest(ctx, opt)
	if err != nil {
		return nil, err
	}
	img, err := (&images.Builder{CacheDir: opt.CacheDir, Progress: opt.Progress}).Ensure(ctx, c.ImageRecipe())
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(opt.ResultsDir, c.Name+"-bisect", time.Now().UTC().Format("20060102-150405"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("results directory: %w", err)
	}
	// Every prefix is judged by the variant's own expectations.
	cc := *c
	if opt.Duration > 0 {
		cc.Workload.Duration = casespec.Duration(opt.Duration)
	}
	cc.Variants = maps.Clone(c.Variants)
	for n := 0; n <= len(specs[0].Patches); n++ {
		cc.Variants[prefixName(n)] = casespec.Variant{Description: fmt.Sprintf("first %d patches of %s", n, variant), Expect: c.Variants[variant].Expect}
	}
	o := &BisectOracle{
		Stack: specs[0].Patches, c: &cc, variant: variant, spec: specs[0],
		kb:       &kernel.Builder{CacheDir: opt.CacheDir, Progress: opt.Progress},
		seed:     opt.Seed,
		progress: opt.Progress,
		kernels:  map[int]*kernel.Artifact{},
		Records:  map[int][]*record.RunRecord{},
	}
	o.runner = &Runner{Case: &cc, Image: img, GuestBin: guestBin, Accel: opt.Accel, ResultsDir: dir, Progress: opt.Progress}
	if opt.Accel == "" || opt.Accel == "auto" {
		k, err := o.kernel(ctx, len(o.Stack))
		if err != nil {
			return nil, err
		}
		o.runner.Accel, _ = vm.ProbeAccel(ctx, "", k.BzImage)
	}
	return o, nil
}

func prefixName(n int) string { return fmt.Sprintf("prefix-%d", n) }

// Dir is where the runs' evidence goes.
func (o *BisectOracle) Dir() string { return o.runner.ResultsDir }

func (o *BisectOracle) kernel(ctx context.Context, n int) (*kernel.Artifact, error) {
	if k, ok := o.kernels[n]; ok {
		return k, nil
	}
	spec := o.spec
	spec.Name = prefixName(n)
	spec.Patches = o.Stack[:n]
	k, err := o.kb.Build(ctx, spec)
	if err != nil {
		return nil, fmt.Errorf("building the first %d patches of %s: %w", n, o.variant, err)
	}
	o.kernels[n] = k
	return k, nil
}

// Run implements bisect.Oracle. Attempt a of prefix n uses seed
// opt.Seed + 1000*n + a, so a step's runs can be repeated one by one.
func (o *BisectOracle) Run(ctx context.Context, prefix, attempt int) (bool, error) {
	if prefix < 0 || prefix > len(o.Stack) {
		return false, fmt.Errorf("prefix %d outside 0..%d", prefix, len(o.Stack))
	}
	k, err := o.kernel(ctx, prefix)
	if err != nil {
		// A prefix that does not build is not a failure of the workload.
		return false, err
	}
	rec, err := o.runner.RunOne(ctx, prefixName(prefix), attempt, o.seed+1000*uint64(prefix)+uint64(attempt), k)
	if err != nil {
		return false, err
	}
	o.Records[prefix] = append(o.Records[prefix], rec)
	switch rec.Outcome {
	case record.Pass:
		return false, nil
	case record.Fail, record.Crash, record.Hang:
		return true, nil
	}
	return false, errors.New(string(rec.Outcome) + ": " + firstOr(rec.Reasons, "no reason"))
}

func firstOr(s []string, def string) string {
	if len(s) > 0 {
		return s[0]
	}
	return def
}
