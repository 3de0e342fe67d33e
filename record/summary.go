package record

import (
	"fmt"
	"time"

	"patchbay/casespec"
	"patchbay/seqtest"
)

// Summary is what a run of a case produced: the input to every report.
type Summary struct {
	Case      string                `json:"case"`
	Question  string                `json:"question"`
	CaseFile  string                `json:"case_file"`
	Inputs    map[string]string     `json:"inputs,omitempty"` // values of the case's inputs (see harness.Input)
	Baseline  string                `json:"baseline"`
	Started   time.Time             `json:"started"`
	Seconds   float64               `json:"seconds"`
	Seed      uint64                `json:"seed"`
	Accel     string                `json:"accel"`
	AccelNote string                `json:"accel_note"`
	Image     string                `json:"image_key"`
	Workload  casespec.WorkloadSpec `json:"workload"`
	Variants  []VariantSummary      `json:"variants"`
	Dir       string                `json:"-"`

	// PlannedRuns is --runs: runs per variant in the whole plan (0 for a
	// rerun of chosen jobs).
	PlannedRuns int `json:"planned_runs,omitempty"`
	// Shard is "i/K" when this directory holds one shard of the plan; a
	// merge of some but not all shards lists them, e.g. "0,2/4".
	Shard string `json:"shard,omitempty"`
	// StoppedEarly is set when --stop-early left planned runs out;
	// StopReason says which variant, the counts and the p-value.
	StoppedEarly bool   `json:"stopped_early,omitempty"`
	StopReason   string `json:"stop_reason,omitempty"`
	// Decide is what a --decide session concluded and why.
	Decide *DecideRecord `json:"decide,omitempty"`
	// ReproOf is the run directory that patchbay repro ran again.
	ReproOf string `json:"repro_of,omitempty"`
	// MergedFrom are the results directories patchbay merge joined.
	MergedFrom []string `json:"merged_from,omitempty"`
	// NotFinished are the jobs this session planned that have no record:
	// the session was killed (or is still running) before they ended.
	// summary.json is rewritten after every run, so a killed session's
	// directory names them.
	NotFinished []Job `json:"not_finished,omitempty"`
}

// VariantSummary is one variant's kernel and runs.
type VariantSummary struct {
	Name        string               `json:"name"`
	Description string               `json:"description"`
	Patches     []string             `json:"patches"`
	Expect      casespec.Expectation `json:"expect"`
	Kernel      *Kernel              `json:"kernel,omitempty"`
	BuildError  string               `json:"build_error,omitempty"`
	Runs        []*RunRecord         `json:"runs"`
}

// Counts returns the number of runs per outcome.
func (v *VariantSummary) Counts() map[Outcome]int {
	c := map[Outcome]int{}
	for _, r := range v.Runs {
		c[r.Outcome]++
	}
	return c
}

// Job is one run of the matrix: variant's run number Index with its seed.
type Job struct {
	Variant string `json:"variant"`
	Index   int    `json:"index"`
	Seed    uint64 `json:"seed"`
}

// String is "variant#index (seed N)".
func (j Job) String() string { return fmt.Sprintf("%s#%d (seed %d)", j.Variant, j.Index, j.Seed) }

// DecideRule names the stopping rule of a decide session (see seqtest).
const DecideRule = "group-sequential exact sign test on rounds paired by seed (discordant rounds are Binomial(d, 1/2) under equal failure rates), Kim-DeMets alpha spending alpha*t^rho over t = d/D, looks after every round; equivalence by the exact-bound Newcombe interval at the final look"

// DecideRecord is what a decide session (run --decide) did and concluded:
// the rule, its boundaries, the budget and each variant's decision with the
// evidence (counts and the boundary at every look).
type DecideRecord struct {
	Rule          string            `json:"rule"`
	Design        seqtest.Design    `json:"design"`
	Bounds        seqtest.Bounds    `json:"bounds"`
	BudgetRuns    int               `json:"budget_runs,omitempty"`
	BudgetSeconds float64           `json:"budget_seconds,omitempty"`
	Rounds        int               `json:"rounds"` // rounds started
	Ended         string            `json:"ended"`  // why scheduling stopped
	Variants      []VariantDecision `json:"variants"`
}

// VariantDecision is one non-baseline variant's decision against the
// baseline.
type VariantDecision struct {
	Name string `json:"name"`
	seqtest.Result
}

// Decision returns the named variant's decision, or nil.
func (d *DecideRecord) Decision(name string) *VariantDecision {
	if d == nil {
		return nil
	}
	for i := range d.Variants {
		if d.Variants[i].Name == name {
			return &d.Variants[i]
		}
	}
	return nil
}

// Kernel is a built kernel in the cache (kernel.Artifact): where its
// files are and what it was built from.
type Kernel struct {
	Key       string   `json:"key"`
	Dir       string   `json:"dir"`
	BzImage   string   `json:"bzimage"`
	Vmlinux   string   `json:"vmlinux"`
	SystemMap string   `json:"system_map"`
	Config    string   `json:"config"`
	Release   string   `json:"release"`
	Source    string   `json:"source"`
	Patches   []string `json:"patches"`
	Stack     []string `json:"stack,omitempty"`   // "name: subject" of each applied patch
	Variant   string   `json:"variant,omitempty"` // the variant it was first built for
	BaseKey   string   `json:"base_key,omitempty"`
	Compiler  string   `json:"compiler"`
	BuildSecs float64  `json:"build_seconds"`
	Cached    bool     `json:"-"`
}
