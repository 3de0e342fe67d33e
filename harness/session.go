package harness

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"patchbay/casespec"
	"patchbay/images"
	"patchbay/kernel"
	"patchbay/record"
	"patchbay/seqtest"
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
	Phases     bool          // progress shows each run's phases, not only its start and outcome
	GuestBin   string        // prebuilt pbguest; empty: build it from this module
	Cold       bool          // boot every run cold instead of restoring the kernel's snapshot
	Progress   io.Writer

	// Shard runs only slice Shard.Index of Shard.Count of the plan (job j
	// of Plan goes to shard j % Count); seeds are those of the whole plan.
	Shard ShardSpec
	// Only runs exactly these jobs instead of the plan (patchbay repro):
	// each with its own index and seed. Runs and Shard do not apply.
	Only []record.Job
	// StopEarly stops scheduling runs once some variant's failure rate
	// differs from the baseline's with Fisher p < StopEarlyAlpha, both
	// with at least StopEarlyMinJudged judged runs.
	StopEarly bool
	// Decide schedules rounds (run k of every variant still undecided,
	// baseline included) until the sequential rule Rule has decided every
	// variant against the baseline or the budget (BudgetRuns runs, Budget
	// of wall time from the start) ends; Runs does not apply.
	Decide     bool
	Rule       seqtest.Design // zero: seqtest.Default()
	BudgetRuns int
	Budget     time.Duration
	// Status, when set, gets a decide session's status (a line per
	// variant and one for the budget) after every run, instead of
	// Progress getting it as one line.
	Status func(lines []string)
	// ExpectKernel maps a variant to the kernel key an earlier run used;
	// when the case builds a different kernel now, a warning is logged.
	ExpectKernel map[string]string
}

// Stop-early thresholds (see Options.StopEarly).
const (
	StopEarlyAlpha     = 0.05
	StopEarlyMinJudged = 3
)

// selectJobs returns the variants of the session and the jobs to run: the
// plan (Plan), one shard of it, or exactly opt.Only.
func selectJobs(c *Case, opt Options) ([]string, []record.Job, error) {
	names, err := c.SelectVariants(opt.Variants)
	if err != nil {
		return nil, nil, err
	}
	if len(opt.Only) > 0 {
		if opt.Shard.Sharded() || opt.StopEarly {
			return nil, nil, errors.New("a rerun of chosen jobs cannot be sharded or stopped early")
		}
		in := map[string]bool{}
		for _, n := range names {
			in[n] = true
		}
		used := map[string]bool{}
		for _, j := range opt.Only {
			if !in[j.Variant] {
				return nil, nil, fmt.Errorf("%s: job %s: no variant %q selected (have %s)", c.File, j, j.Variant, strings.Join(names, ", "))
			}
			used[j.Variant] = true
		}
		if len(opt.Variants) == 0 {
			// Only the variants that run, in the case's order.
			var keep []string
			for _, n := range names {
				if used[n] {
					keep = append(keep, n)
				}
			}
			names = keep
		}
		return names, opt.Only, nil
	}
	if err := opt.Shard.Check(); err != nil {
		return nil, nil, err
	}
	if opt.Decide {
		switch {
		case opt.StopEarly || opt.Shard.Sharded():
			return nil, nil, errors.New("--decide schedules rounds itself: it cannot be sharded or combined with --stop-early")
		case c.Baseline == "" || !slices.Contains(names, c.Baseline):
			return nil, nil, fmt.Errorf("--decide compares against the baseline: select variant %q too", c.Baseline)
		case len(names) < 2:
			return nil, nil, errors.New("--decide needs a variant besides the baseline")
		case opt.BudgetRuns <= 0 && opt.Budget <= 0:
			return nil, nil, errors.New("--decide needs a budget: --budget-runs N or --budget DURATION")
		}
		// The first round, for the plan's bookkeeping; later ones are
		// made as the session goes.
		return names, Plan(c, names, 1, opt.Seed), nil
	}
	if opt.StopEarly {
		if opt.Shard.Sharded() {
			return nil, nil, errors.New("--stop-early decides on every run of the plan; a shard sees only its own: run it unsharded")
		}
		if c.Baseline == "" || !slices.Contains(names, c.Baseline) {
			return nil, nil, fmt.Errorf("--stop-early compares against the baseline: select variant %q too", c.Baseline)
		}
	}
	jobs := Plan(c, names, opt.Runs, opt.Seed)
	if opt.Shard.Sharded() {
		jobs = Shard(jobs, opt.Shard.Index, opt.Shard.Count)
	}
	return names, jobs, nil
}

// RunCase builds what the case needs and runs every selected job: the
// plan of Plan (variants x runs), one shard of it, or opt.Only.
func RunCase(ctx context.Context, c *Case, opt Options) (*record.Summary, error) {
	logf := func(format string, args ...any) {
		if opt.Progress != nil {
			fmt.Fprintf(opt.Progress, format+"\n", args...)
		}
	}
	if opt.Runs < 1 {
		opt.Runs = 1
	}
	names, jobs, err := selectJobs(c, opt)
	if err != nil {
		return nil, err
	}
	// Inputs and patch stacks first: a missing --input must not wait for
	// the guest image (minutes on a cold cache) or leave a results folder.
	specs, err := c.KernelSpecs(names)
	if err != nil {
		return nil, err
	}
	if opt.Jobs < 1 {
		opt.Jobs = DefaultJobs(c.VM.MemoryMB)
	}
	if opt.Keep && len(jobs) != 1 {
		return nil, errors.New("--keep keeps one VM for debugging: use it with one --variant and --runs 1")
	}
	if opt.Duration > 0 {
		c.Workload.Duration = casespec.Duration(opt.Duration)
	}
	start := time.Now()
	stamp := start.UTC().Format("20060102-150405")
	if opt.Shard.Sharded() {
		stamp += fmt.Sprintf("-shard%dof%d", opt.Shard.Index, opt.Shard.Count)
	}
	dir, err := newResultsDir(filepath.Join(opt.ResultsDir, c.Name), stamp)
	if err != nil {
		return nil, err
	}
	sum := &record.Summary{
		Case: c.Name, Question: strings.TrimSpace(c.Question), CaseFile: c.File, Inputs: c.InputValues(), Baseline: c.Baseline,
		Started: start.UTC(), Seed: opt.Seed, Workload: c.Workload, Dir: dir, Shard: opt.Shard.String(),
	}
	if len(opt.Only) == 0 {
		sum.PlannedRuns = opt.Runs
	}
	// From here on summary.json always says which runs are still missing.
	cp := &checkpoint{sum: sum}
	for _, n := range names {
		v := c.Variants[n]
		cp.planned = append(cp.planned, record.VariantSummary{Name: n, Description: v.Description, Patches: v.Patches, Expect: v.Expect})
	}
	sum.Variants = cp.planned
	if err := cp.start(jobs); err != nil {
		return nil, err
	}
	sum.Variants = nil
	wanted := map[string]bool{}
	for _, j := range jobs {
		wanted[j.Variant] = true
	}
	if len(jobs) == 0 {
		logf("shard %s has no jobs (%d variant(s) x %d run(s)): nothing to run", opt.Shard, len(names), opt.Runs)
		sum.Variants = cp.planned
		sum.Seconds = time.Since(start).Seconds()
		return sum, nil
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
		img, err := (&images.Builder{CacheDir: opt.CacheDir, Progress: opt.Progress}).Ensure(ctx, c.ImageRecipe())
		imageDone <- imageResult{img, err}
	}()
	waitImage := func() (*images.Image, error) {
		r := <-imageDone
		imageDone <- r
		return r.img, r.err
	}
	defer waitImage() // never leave debootstrap running behind us

	kb := &kernel.Builder{CacheDir: opt.CacheDir, Progress: opt.Progress}
	byName := map[string]int{}
	for i, n := range names {
		v := c.Variants[n]
		vs := record.VariantSummary{Name: n, Description: v.Description, Patches: v.Patches, Expect: v.Expect}
		byName[n] = i
		if !wanted[n] {
			// No job of this shard runs it: do not pay for its kernel.
			sum.Variants = append(sum.Variants, vs)
			continue
		}
		k, err := kb.Build(ctx, specs[i])
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			// One variant's broken patch must not stop the others.
			vs.BuildError = buildErrorText(n, err)
			logf("variant %s: build failed: %s", n, vs.BuildError)
		}
		if want, ok := opt.ExpectKernel[n]; ok && k != nil && k.Key != want {
			logf("warning: variant %s: the case builds kernel %s now, the run being repeated used %s (source, patches, fragments or compiler changed)", n, k.Key, want)
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

	runner := &Runner{Case: c, Image: img, GuestBin: guestBin, Accel: sum.Accel, ResultsDir: dir, Progress: opt.Progress, Keep: opt.Keep, Phases: opt.Phases,
		Snapshots: NewSnapshots(opt.CacheDir, opt.Cold)}
	// Jobs of variants without a kernel cannot run.
	var todo []int
	for j, job := range jobs {
		if sum.Variants[byName[job.Variant]].Kernel != nil {
			todo = append(todo, j)
		}
	}
	if opt.Decide {
		// Rounds are decided as they come: each job is recorded as not
		// finished when it starts (checkpoint.begin), not planned ahead.
		if err := cp.start(nil); err != nil {
			return nil, err
		}
		return runDecide(ctx, c, opt, sum, names, byName, runner, start, logf, cp)
	}
	var planned []record.Job
	for _, j := range todo {
		planned = append(planned, jobs[j])
	}
	if err := cp.start(planned); err != nil {
		return nil, err
	}
	var stop func([]*record.RunRecord) string
	if opt.StopEarly {
		stop = func(recs []*record.RunRecord) string { return stopEarlyReason(c.Baseline, recs) }
	}
	res := schedule(ctx, len(todo), opt.Jobs, func(i int) (*record.RunRecord, error) {
		job := jobs[todo[i]]
		v := &sum.Variants[byName[job.Variant]]
		logf("[run %d/%d] %s #%d (seed %d): booting %s", i+1, len(todo), v.Name, job.Index, job.Seed, v.Kernel.Release)
		rec, err := runner.RunOne(ctx, v.Name, job.Index, job.Seed, v.Kernel)
		if rec != nil {
			if cerr := cp.done(job, rec); cerr != nil {
				err = errors.Join(err, cerr)
			}
		}
		return rec, err
	}, stop)
	if res.stopped != "" {
		logf("stop early: %s", res.stopped)
	}
	cp.mu.Lock()
	defer cp.mu.Unlock()
	// The records again, in job order rather than the order runs ended.
	for i := range sum.Variants {
		sum.Variants[i].Runs = nil
	}
	done := 0
	for _, rec := range res.records {
		if rec != nil {
			v := &sum.Variants[byName[rec.Variant]]
			v.Runs = append(v.Runs, rec)
			done++
		}
	}
	if res.stopped != "" && res.started < len(todo) {
		sum.StoppedEarly = true
		sum.StopReason = fmt.Sprintf("%s; %d of %d planned runs done", res.stopped, done, len(todo))
		// Skipped on purpose, not unfinished: stop_reason says why.
		sum.NotFinished = nil
	}
	sum.Seconds = time.Since(start).Seconds()
	return sum, errors.Join(res.errs...)
}

// newResultsDir creates parent/stamp-XXXXXXXX (a random suffix) with
// os.Mkdir, which fails when the name exists: two sessions started in the
// same second never share a directory (and its console.log files).
func newResultsDir(parent, stamp string) (string, error) {
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return "", fmt.Errorf("results directory: %w", err)
	}
	for range 16 {
		var b [4]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", fmt.Errorf("results directory: %w", err)
		}
		dir := filepath.Join(parent, stamp+"-"+hex.EncodeToString(b[:]))
		err := os.Mkdir(dir, 0o755)
		if err == nil {
			return dir, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return "", fmt.Errorf("results directory: %w", err)
		}
	}
	return "", fmt.Errorf("results directory: no free name for %s in %s after 16 tries", stamp, parent)
}

// checkpoint keeps summary.json on disk current while a session runs:
// the planned jobs before the first run, then every record as its run
// ends, so that a session killed half way leaves a directory that
// `patchbay report` renders, naming the runs that never finished.
type checkpoint struct {
	mu      sync.Mutex
	sum     *record.Summary
	planned []record.VariantSummary // the variants before any build, for the first write
}

// start records jobs as not finished and writes summary.json.
func (cp *checkpoint) start(jobs []record.Job) error {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	cp.sum.NotFinished = slices.Clone(jobs)
	return cp.write()
}

// begin records one more job as not finished (run --decide schedules its
// rounds as it goes) and writes summary.json.
func (cp *checkpoint) begin(job record.Job) error {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	cp.sum.NotFinished = append(cp.sum.NotFinished, job)
	return cp.write()
}

// done adds the record of job to the summary and writes summary.json.
func (cp *checkpoint) done(job record.Job, rec *record.RunRecord) error {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	cp.sum.NotFinished = slices.DeleteFunc(cp.sum.NotFinished, func(j record.Job) bool { return j == job })
	for i := range cp.sum.Variants {
		if v := &cp.sum.Variants[i]; v.Name == rec.Variant {
			v.Runs = append(v.Runs, rec)
		}
	}
	return cp.write()
}

func (cp *checkpoint) write() error {
	cp.sum.Seconds = time.Since(cp.sum.Started).Seconds()
	if err := writeJSON(filepath.Join(cp.sum.Dir, "summary.json"), cp.sum); err != nil {
		return fmt.Errorf("saving the summary so far: %w", err)
	}
	return nil
}

// buildErrorText is err's message without the "variant NAME: " prefix the
// kernel builder puts on it: the report and the log name the variant
// already ("variant X: build failed: variant X: ..." otherwise).
func buildErrorText(name string, err error) string {
	msg := err.Error()
	for {
		rest, ok := strings.CutPrefix(msg, "variant "+name+": ")
		if !ok {
			return msg
		}
		msg = rest
	}
}

// scheduled is what schedule did.
type scheduled struct {
	records []*record.RunRecord // by job, nil for jobs not run
	errs    []error
	started int    // jobs handed out
	stopped string // why stop asked to stop, or ""
}

// schedule runs jobs 0..n-1 in order on up to workers goroutines. After
// each run, stop (when not nil) sees every record so far; once it gives a
// reason no further job is handed out (running ones finish). A cancelled
// ctx also stops handing out jobs.
func schedule(ctx context.Context, n, workers int, run func(i int) (*record.RunRecord, error), stop func([]*record.RunRecord) string) scheduled {
	res := scheduled{records: make([]*record.RunRecord, n), errs: make([]error, n)}
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	for w := 0; w < max(workers, 1); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				if res.started >= n || res.stopped != "" || ctx.Err() != nil {
					mu.Unlock()
					return
				}
				i := res.started
				res.started++
				mu.Unlock()
				rec, err := run(i)
				mu.Lock()
				res.records[i], res.errs[i] = rec, err
				if stop != nil && res.stopped == "" {
					res.stopped = stop(res.records)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return res
}

// stopEarlyReason says why to stop scheduling runs, or "": some variant's
// failures/passes differ from the baseline's with Fisher p < StopEarlyAlpha,
// both having at least StopEarlyMinJudged judged runs. Looking again after
// every run inflates the error rate beyond alpha: this saves VM time when
// the answer is plain; it is not a substitute for a planned number of runs.
func stopEarlyReason(baseline string, records []*record.RunRecord) string {
	type tally struct{ judged, failures int }
	per := map[string]*tally{}
	var order []string
	for _, r := range records {
		if r == nil || !record.IsJudged(r.Outcome) {
			continue
		}
		t := per[r.Variant]
		if t == nil {
			t = &tally{}
			per[r.Variant] = t
			order = append(order, r.Variant)
		}
		t.judged++
		if record.IsFailure(r.Outcome) {
			t.failures++
		}
	}
	b := per[baseline]
	if b == nil || b.judged < StopEarlyMinJudged {
		return ""
	}
	for _, name := range order {
		v := per[name]
		if name == baseline || v.judged < StopEarlyMinJudged {
			continue
		}
		p := record.FisherExact(v.failures, v.judged-v.failures, b.failures, b.judged-b.failures)
		if p < StopEarlyAlpha {
			return fmt.Sprintf("%s failed %d/%d runs vs baseline %s %d/%d: Fisher p=%.2g < %g",
				name, v.failures, v.judged, baseline, b.failures, b.judged, p, StopEarlyAlpha)
		}
	}
	return ""
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
	dir := filepath.Join(opt.CacheDir, "guest")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	// Build to a temporary name, then name the binary by its content: a
	// session keeps uploading the binary it built even when another tree
	// (another worktree, another checkout) builds a different one meanwhile.
	tmp, err := os.CreateTemp(dir, ".pbguest-*.tmp")
	if err != nil {
		return "", err
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", tmp.Name(), "./guest/cmd/pbguest")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building the guest workload: %w\n%s", err, msg)
	}
	sum, err := fileSHA256(tmp.Name())
	if err != nil {
		return "", fmt.Errorf("building the guest workload: %w", err)
	}
	out := filepath.Join(dir, "pbguest-"+sum[:16])
	if err := os.Rename(tmp.Name(), out); err != nil {
		return "", fmt.Errorf("building the guest workload: %w", err)
	}
	return out, nil
}

// fileSHA256 is the hex SHA-256 of a file's content.
func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
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
	source, msg := c.resolveInput(c.Kernel.Source)
	if msg != "" {
		return nil, fmt.Errorf("%s:%d: kernel.source: %s", c.File, c.line("kernel.source"), msg)
	}
	src, err := kernel.ParseSource(source)
	if err != nil {
		return nil, fmt.Errorf("%s:%d: kernel.source: %w", c.File, c.line("kernel.source"), err)
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
		// base/drop/replace/add expanded; mbox members as FILE#N.
		patches, err := c.PatchStack(n)
		if err != nil {
			return nil, err
		}
		specs = append(specs, kernel.Spec{Name: n, Source: src, Fragments: frags, Patches: patches})
	}
	return specs, nil
}
