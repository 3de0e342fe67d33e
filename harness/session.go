package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"patchbay/images"
	"patchbay/kernel"
	"patchbay/vm"
)

// Options are the knobs of one `patchbay run`.
type Options struct {
	CacheDir   string
	ResultsDir string        // results/<case>/<timestamp>/ is created under it
	Variants   []string      // empty: all, baseline first
	Runs       int           // runs per variant
	Seed       uint64        // base seed; run k of every variant uses Seed+k
	Duration   time.Duration // overrides the case's workload duration when > 0
	Accel      string        // auto, kvm or tcg
	Jobs       int           // VMs at once; 0 means DefaultJobs
	Keep       bool          // keep the VM of the (single) run alive until ctx ends
	GuestBin   string        // prebuilt pbguest; empty: build it from this module
	Progress   io.Writer
}

// Summary is what a run of a case produced: the input to every report.
type Summary struct {
	Case      string           `json:"case"`
	Question  string           `json:"question"`
	CaseFile  string           `json:"case_file"`
	Baseline  string           `json:"baseline"`
	Started   time.Time        `json:"started"`
	Seconds   float64          `json:"seconds"`
	Seed      uint64           `json:"seed"`
	Accel     string           `json:"accel"`
	AccelNote string           `json:"accel_note"`
	Image     string           `json:"image_key"`
	Workload  WorkloadSpec     `json:"workload"`
	Variants  []VariantSummary `json:"variants"`
	Dir       string           `json:"-"`
}

// VariantSummary is one variant's kernel and runs.
type VariantSummary struct {
	Name        string           `json:"name"`
	Description string           `json:"description"`
	Patches     []string         `json:"patches"`
	Expect      Expectation      `json:"expect"`
	Kernel      *kernel.Artifact `json:"kernel,omitempty"`
	BuildError  string           `json:"build_error,omitempty"`
	Runs        []*RunRecord     `json:"runs"`
}

// Counts returns the number of runs per outcome.
func (v *VariantSummary) Counts() map[Outcome]int {
	c := map[Outcome]int{}
	for _, r := range v.Runs {
		c[r.Outcome]++
	}
	return c
}

// RunCase builds what the case needs and runs every selected variant.
func RunCase(ctx context.Context, c *Case, opt Options) (*Summary, error) {
	logf := func(format string, args ...any) {
		if opt.Progress != nil {
			fmt.Fprintf(opt.Progress, format+"\n", args...)
		}
	}
	names := opt.Variants
	if len(names) == 0 {
		names = c.VariantNames()
	}
	for _, n := range names {
		if _, ok := c.Variants[n]; !ok {
			return nil, fmt.Errorf("%s: no variant %q (have %s)", c.File, n, strings.Join(c.VariantNames(), ", "))
		}
	}
	if opt.Runs < 1 {
		opt.Runs = 1
	}
	if opt.Jobs < 1 {
		opt.Jobs = DefaultJobs(c.VM.MemoryMB)
	}
	if opt.Keep && (opt.Runs != 1 || len(names) != 1) {
		return nil, errors.New("--keep keeps one VM for debugging: use it with one --variant and --runs 1")
	}
	if opt.Duration > 0 {
		c.Workload.Duration = Duration(opt.Duration)
	}
	start := time.Now()
	dir := filepath.Join(opt.ResultsDir, c.Name, start.UTC().Format("20060102-150405"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("results directory: %w", err)
	}
	sum := &Summary{
		Case: c.Name, Question: strings.TrimSpace(c.Question), CaseFile: c.File, Baseline: c.Baseline,
		Started: start.UTC(), Seed: opt.Seed, Workload: c.Workload, Dir: dir,
	}

	guestBin, err := ensureGuest(ctx, opt)
	if err != nil {
		return nil, err
	}
	// The image (debootstrap: network and dpkg bound) builds while the
	// kernels (CPU bound) do.
	type imageResult struct {
		img *images.Image
		err error
	}
	imageDone := make(chan imageResult, 1)
	go func() {
		img, err := (&images.Builder{CacheDir: opt.CacheDir, Progress: opt.Progress}).Ensure(ctx, images.DefaultRecipe())
		imageDone <- imageResult{img, err}
	}()
	waitImage := func() (*images.Image, error) {
		r := <-imageDone
		imageDone <- r
		return r.img, r.err
	}
	defer waitImage() // never leave debootstrap running behind us

	specs, err := c.KernelSpecs(names)
	if err != nil {
		return nil, err
	}
	kb := &kernel.Builder{CacheDir: opt.CacheDir, Progress: opt.Progress}
	for i, n := range names {
		v := c.Variants[n]
		vs := VariantSummary{Name: n, Description: v.Description, Patches: v.Patches, Expect: v.Expect}
		k, err := kb.Build(ctx, specs[i])
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			// One variant's broken patch must not stop the others.
			logf("variant %s: build failed: %v", n, err)
			vs.BuildError = err.Error()
		}
		vs.Kernel = k
		sum.Variants = append(sum.Variants, vs)
	}

	sum.Accel, sum.AccelNote = opt.Accel, "requested"
	if opt.Accel == "" || opt.Accel == "auto" {
		for _, v := range sum.Variants {
			if v.Kernel != nil {
				sum.Accel, sum.AccelNote = vm.ProbeAccel(ctx, "", v.Kernel.BzImage)
				break
			}
		}
		logf("accel: %s (%s)", sum.Accel, sum.AccelNote)
	}

	img, err := waitImage()
	if err != nil {
		return nil, err
	}
	sum.Image = img.Key

	runner := &Runner{Case: c, Image: img, GuestBin: guestBin, Accel: sum.Accel, ResultsDir: dir, Progress: opt.Progress, Keep: opt.Keep}
	// Interleave variants (run 0 of each, then run 1, ...) so a stopped
	// session still has comparable evidence for every variant.
	type job struct{ variant, index int }
	var jobs []job
	for k := 0; k < opt.Runs; k++ {
		for i := range sum.Variants {
			if sum.Variants[i].Kernel != nil {
				jobs = append(jobs, job{i, k})
			}
		}
	}
	records := make([]*RunRecord, len(jobs))
	errs := make([]error, len(jobs))
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < max(opt.Jobs, 1); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range next {
				v := &sum.Variants[jobs[j].variant]
				k := jobs[j].index
				logf("[run] %s #%d (seed %d): booting %s", v.Name, k, opt.Seed+uint64(k), v.Kernel.Release)
				records[j], errs[j] = runner.RunOne(ctx, v.Name, k, opt.Seed+uint64(k), v.Kernel)
			}
		}()
	}
	for j := range jobs {
		if ctx.Err() != nil {
			break
		}
		next <- j
	}
	close(next)
	wg.Wait()
	for j, rec := range records {
		if rec != nil {
			v := &sum.Variants[jobs[j].variant]
			v.Runs = append(v.Runs, rec)
		}
	}
	sum.Seconds = time.Since(start).Seconds()
	return sum, errors.Join(errs...)
}

// DefaultJobs is how many VMs to run at once: one per two cores (a TCG
// guest keeps about two busy) and one per 1.5 GiB of memory, at least one.
func DefaultJobs(memoryMB int) int {
	jobs := runtime.NumCPU() / 2
	if total := totalMemoryMB(); total > 0 {
		jobs = min(jobs, total/(memoryMB+512))
	}
	return max(jobs, 1)
}

func totalMemoryMB() int {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	var kb int
	for _, line := range strings.Split(string(data), "\n") {
		if _, err := fmt.Sscanf(line, "MemTotal: %d kB", &kb); err == nil {
			return kb / 1024
		}
	}
	return 0
}

// ensureGuest returns the static guest workload binary: the given one, or
// one built from this module (CGO off: the guest has no Go toolchain).
func ensureGuest(ctx context.Context, opt Options) (string, error) {
	if opt.GuestBin != "" {
		if _, err := os.Stat(opt.GuestBin); err != nil {
			return "", fmt.Errorf("guest binary: %w", err)
		}
		return opt.GuestBin, nil
	}
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	out := filepath.Join(opt.CacheDir, "guest", "pbguest")
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return "", err
	}
	// Build beside the final name and rename: another patchbay may be
	// uploading the previous binary right now.
	tmp := fmt.Sprintf("%s.%d", out, os.Getpid())
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", tmp, "./guest/cmd/pbguest")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if msg, err := cmd.CombinedOutput(); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("building the guest workload: %w\n%s", err, msg)
	}
	return out, os.Rename(tmp, out)
}

// moduleRoot finds this module's source from the working directory up.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.HasPrefix(string(data), "module patchbay\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("guest binary: not inside the patchbay source tree; pass --guest-bin (CGO_ENABLED=0 go build ./guest/cmd/pbguest)")
		}
		dir = parent
	}
}

// DefaultCacheDir is $PATCHBAY_CACHE, else the user cache dir + /patchbay:
// outside the repository, shared by every clone.
func DefaultCacheDir() string {
	if d := os.Getenv("PATCHBAY_CACHE"); d != "" {
		return d
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "patchbay")
	}
	return filepath.Join(os.TempDir(), "patchbay-cache")
}

// KernelSpecs returns the kernel build of each named variant (all variants,
// baseline first, when names is empty): the case's source and fragments plus
// the variant's patches, with paths resolved against the case folder.
func (c *Case) KernelSpecs(names []string) ([]kernel.Spec, error) {
	src, err := kernel.ParseSource(c.Kernel.Source)
	if err != nil {
		return nil, fmt.Errorf("%s: kernel.source: %w", c.File, err)
	}
	var frags []string
	for _, f := range c.Kernel.Fragments {
		frags = append(frags, c.Path(f))
	}
	if len(names) == 0 {
		names = c.VariantNames()
	}
	var specs []kernel.Spec
	for _, n := range names {
		v, ok := c.Variants[n]
		if !ok {
			return nil, fmt.Errorf("%s: no variant %q (have %s)", c.File, n, strings.Join(c.VariantNames(), ", "))
		}
		var patches []string
		for _, p := range v.Patches {
			patches = append(patches, c.Path(p))
		}
		specs = append(specs, kernel.Spec{Name: n, Source: src, Fragments: frags, Patches: patches})
	}
	return specs, nil
}
