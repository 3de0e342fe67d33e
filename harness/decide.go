package harness

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"patchbay/record"
	"patchbay/seqtest"
)

// decider keeps the runs of a decide session by round and decides each
// variant as soon as its rounds allow.
type decider struct {
	design   seqtest.Design
	bounds   seqtest.Bounds
	baseline string
	variants []string                             // non-baseline, in session order
	byRound  map[string]map[int]*record.RunRecord // variant -> round -> record
	result   map[string]seqtest.Result
}

func newDecider(design seqtest.Design, baseline string, names []string) (*decider, error) {
	b, err := design.Bounds()
	if err != nil {
		return nil, fmt.Errorf("decide rule: %w", err)
	}
	d := &decider{design: design, bounds: b, baseline: baseline, byRound: map[string]map[int]*record.RunRecord{}, result: map[string]seqtest.Result{}}
	for _, n := range names {
		d.byRound[n] = map[int]*record.RunRecord{}
		if n != baseline {
			d.variants = append(d.variants, n)
			d.result[n] = seqtest.Result{Decision: seqtest.Undecided}
		}
	}
	return d, nil
}

// pairs are the variant's complete rounds in order up to the first one
// still missing a run; a round where either run says nothing about the
// kernel (infra-error, interrupted) is left out.
func (d *decider) pairs(variant string) []seqtest.Pair {
	var out []seqtest.Pair
	for k := 0; ; k++ {
		v, b := d.byRound[variant][k], d.byRound[d.baseline][k]
		if v == nil || b == nil {
			return out
		}
		if record.IsJudged(v.Outcome) && record.IsJudged(b.Outcome) {
			out = append(out, seqtest.Pair{Variant: record.IsFailure(v.Outcome), Baseline: record.IsFailure(b.Outcome)})
		}
	}
}

// add records a run and updates the decisions it can change.
func (d *decider) add(rec *record.RunRecord, round int) {
	if m := d.byRound[rec.Variant]; m != nil {
		m[round] = rec
	}
	for _, v := range d.variants {
		if !d.result[v].Decision.Decided() {
			d.result[v] = d.design.Decide(d.bounds, d.pairs(v), false)
		}
	}
}

func (d *decider) undecided() []string {
	var out []string
	for _, v := range d.variants {
		if !d.result[v].Decision.Decided() {
			out = append(out, v)
		}
	}
	return out
}

// finish gives the variants still undecided their final look.
func (d *decider) finish() {
	for _, v := range d.undecided() {
		d.result[v] = d.design.Decide(d.bounds, d.pairs(v), true)
	}
}

// status is one line per variant (runs, failures, the decision so far)
// and one for the budget.
func (d *decider) status(left time.Duration, budgetRuns, started int) []string {
	var parts []string
	count := func(n string) (runs, fails int) {
		for _, r := range d.byRound[n] {
			runs++
			if record.IsFailure(r.Outcome) {
				fails++
			}
		}
		return
	}
	r, f := count(d.baseline)
	parts = append(parts, fmt.Sprintf("%s (baseline): %d runs, %d failed", d.baseline, r, f))
	for _, v := range d.variants {
		r, f := count(v)
		res := d.result[v]
		state := string(res.Decision)
		if lk := lastLook(res); !res.Decision.Decided() && lk != nil {
			state = fmt.Sprintf("undecided: %d of %d discordant rounds against it (%s)", lk.VariantOnly, lk.Discordant, d.nextBound(lk.Discordant))
		}
		parts = append(parts, fmt.Sprintf("%s: %d runs, %d failed, %s", v, r, f, state))
	}
	var budget []string
	if left > 0 {
		budget = append(budget, fmt.Sprintf("%s left", left.Round(time.Second)))
	}
	if budgetRuns > 0 {
		budget = append(budget, fmt.Sprintf("%d of %d runs", started, budgetRuns))
	}
	if len(budget) > 0 {
		parts = append(parts, strings.Join(budget, ", "))
	}
	return parts
}

// nextBound says what the next discordant round would need to decide
// "worse": the boundary there, or where the first one is.
func (d *decider) nextBound(disc int) string {
	n := disc + 1
	if n >= len(d.bounds.Upper) {
		return "D reached"
	}
	if u := d.bounds.Upper[n]; u <= n {
		return fmt.Sprintf("worse at %d of %d", u, n)
	}
	for m := n + 1; m < len(d.bounds.Upper); m++ {
		if u := d.bounds.Upper[m]; u <= m {
			return fmt.Sprintf("worse at %d of %d at the earliest", u, m)
		}
	}
	return "no worse boundary"
}

func lastLook(r seqtest.Result) *seqtest.Look {
	if len(r.Looks) == 0 {
		return nil
	}
	return &r.Looks[len(r.Looks)-1]
}

// decideSchedule runs rounds (run k of every variant still undecided, the
// baseline first, seed+k) on up to workers goroutines until every variant
// is decided, the budget (runs, or a deadline a round is expected to miss)
// ends or ctx is cancelled. status, when not nil, gets the decider's line
// after every run.
func decideSchedule(ctx context.Context, d *decider, names []string, seed uint64, workers, budgetRuns int, deadline time.Time,
	run func(record.Job) (*record.RunRecord, error), status func([]string)) ([]*record.RunRecord, []error, int, string) {
	var (
		mu      sync.Mutex
		wg      sync.WaitGroup
		queue   []record.Job
		round   = -1
		started int
		ended   string
		records []*record.RunRecord
		errs    []error
		secs    []float64
	)
	estimate := func() time.Duration {
		if len(secs) == 0 {
			return 0
		}
		s := 0.0
		for _, x := range secs {
			s += x
		}
		return time.Duration(s / float64(len(secs)) * float64(time.Second))
	}
	// next hands out the next job, or false once scheduling has ended.
	next := func() (record.Job, bool) {
		for {
			if ended != "" {
				return record.Job{}, false
			}
			if ctx.Err() != nil {
				ended = "interrupted"
				continue
			}
			und := d.undecided()
			if len(und) == 0 {
				ended = "every variant decided"
				continue
			}
			// Drop queued runs of variants decided meanwhile.
			keep := queue[:0]
			for _, j := range queue {
				if j.Variant == d.baseline || slices.Contains(und, j.Variant) {
					keep = append(keep, j)
				}
			}
			queue = keep
			if len(queue) > 0 {
				j := queue[0]
				queue = queue[1:]
				started++
				return j, true
			}
			// A new round, only when the budget can pay for all of it.
			n := 1 + len(und)
			if budgetRuns > 0 && started+n > budgetRuns {
				ended = fmt.Sprintf("budget of %d runs", budgetRuns)
				continue
			}
			if !deadline.IsZero() {
				waves := (n + workers - 1) / workers
				if time.Now().Add(time.Duration(waves) * estimate()).After(deadline) {
					ended = "time budget"
					continue
				}
			}
			round++
			k := round
			queue = append(queue, record.Job{Variant: d.baseline, Index: k, Seed: seed + uint64(k)})
			for _, n := range names {
				if slices.Contains(und, n) {
					queue = append(queue, record.Job{Variant: n, Index: k, Seed: seed + uint64(k)})
				}
			}
		}
	}
	for w := 0; w < max(workers, 1); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				job, ok := next()
				mu.Unlock()
				if !ok {
					return
				}
				rec, err := run(job)
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				}
				if rec == nil {
					// No record (the harness failed): the round still counts as
					// done for this variant, as a run that says nothing.
					d.add(&record.RunRecord{Variant: job.Variant, Outcome: record.InfraError}, job.Index)
				} else {
					records = append(records, rec)
					secs = append(secs, rec.Seconds)
					d.add(rec, job.Index)
					if status != nil {
						left := time.Duration(0)
						if !deadline.IsZero() {
							left = max(time.Until(deadline), 0)
						}
						status(d.status(left, budgetRuns, started))
					}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if ended == "" {
		ended = "interrupted"
	}
	return records, errs, round + 1, ended
}

// runDecide is RunCase's scheduling for --decide: rounds until every
// variant with a kernel is decided against the baseline or the budget ends.
func runDecide(ctx context.Context, c *Case, opt Options, sum *record.Summary, names []string, byName map[string]int, runner *Runner,
	start time.Time, logf func(string, ...any), cp *checkpoint) (*record.Summary, error) {
	design := opt.Rule
	if design == (seqtest.Design{}) {
		design = seqtest.Default()
	}
	sum.PlannedRuns = 0
	var ready []string
	for _, n := range names {
		if sum.Variants[byName[n]].Kernel != nil {
			ready = append(ready, n)
		}
	}
	if !slices.Contains(ready, c.Baseline) {
		return sum, fmt.Errorf("--decide: the baseline %s has no kernel: %s", c.Baseline, sum.Variants[byName[c.Baseline]].BuildError)
	}
	d, err := newDecider(design, c.Baseline, ready)
	if err != nil {
		return sum, err
	}
	var deadline time.Time
	if opt.Budget > 0 {
		deadline = start.Add(opt.Budget)
	}
	rec := &record.DecideRecord{Rule: record.DecideRule, Design: design, Bounds: d.bounds, BudgetRuns: opt.BudgetRuns, BudgetSeconds: opt.Budget.Seconds()}
	sum.Decide = rec
	logf("decide: %s; alpha %.2g (worse %.2g, better %.2g), D = %d, rho = %g, equivalence within %.2f at %.2g",
		"sequential sign test", design.AlphaWorse+design.AlphaBetter, design.AlphaWorse, design.AlphaBetter, design.MaxDiscordant, design.Rho, design.Margin, design.EquivAlpha)
	records, errs, rounds, ended := decideSchedule(ctx, d, ready, opt.Seed, opt.Jobs, opt.BudgetRuns, deadline, func(job record.Job) (*record.RunRecord, error) {
		v := &sum.Variants[byName[job.Variant]]
		logf("[round %d] %s #%d (seed %d): booting %s", job.Index+1, v.Name, job.Index, job.Seed, v.Kernel.Release)
		if err := cp.begin(job); err != nil {
			return nil, err
		}
		rec, err := runner.RunOne(ctx, v.Name, job.Index, job.Seed, v.Kernel)
		if rec != nil {
			if cerr := cp.done(job, rec); cerr != nil {
				err = errors.Join(err, cerr)
			}
		}
		return rec, err
	}, func(lines []string) {
		if opt.Status != nil {
			opt.Status(lines)
			return
		}
		logf("[decide] %s", strings.Join(lines, " | "))
	})
	d.finish()
	cp.mu.Lock()
	defer cp.mu.Unlock()
	// The records again, in round order rather than the order runs ended.
	for i := range sum.Variants {
		sum.Variants[i].Runs = nil
	}
	for _, r := range records {
		v := &sum.Variants[byName[r.Variant]]
		v.Runs = append(v.Runs, r)
	}
	for i := range sum.Variants {
		slices.SortFunc(sum.Variants[i].Runs, func(a, b *record.RunRecord) int { return a.Index - b.Index })
	}
	rec.Rounds, rec.Ended = rounds, ended
	for _, v := range d.variants {
		rec.Variants = append(rec.Variants, record.VariantDecision{Name: v, Result: d.result[v]})
		logf("decide: %s vs %s: %s (%s)", v, c.Baseline, d.result[v].Decision, d.result[v].Reason)
	}
	sum.Seconds = time.Since(start).Seconds()
	return sum, errors.Join(errs...)
}
