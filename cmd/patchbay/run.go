package main

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"patchbay/harness"
	"patchbay/record"
	"patchbay/report"
)

func newRunCommand() *cobra.Command {
	var opt harness.Options
	var shard string
	cmd := &cobra.Command{
		Use:   "run CASE",
		Short: "Build, boot and run every variant of a case, then report them side by side",
		Long: `Run builds each variant's kernel (cached), boots it in QEMU, runs the case's
workload over SSH, judges each run against the variant's expectations and
writes results/<case>/<timestamp>/ with summary.json and summary.md.

Run k of every variant uses seed+k. --shard i/K runs only the jobs of shard i
(job j of the plan that 'patchbay plan' prints goes to shard j % K), each with
the seed the unsharded run gives it; 'patchbay merge' joins the shards' results.

--stop-early stops scheduling runs once some variant's failure rate differs
from the baseline's (Fisher exact p < 0.05, at least 3 judged runs each) and
records stopped_early and the reason in summary.json. It looks after every
run, so its p-value is optimistic: it saves VM time when the answer is plain,
it is not a test. Use --decide for one.

--decide runs rounds (run k of the baseline and of every variant still
undecided, seed+k) until a sequential test whose error rates hold however
often it looks has decided each variant against the baseline (differs-worse,
differs-better, equivalent within 0.1, no-difference) or the budget ends
(--budget-runs N, --budget 15m; one of them is required). summary.json
records the rule, its boundaries and each decision's evidence (see README,
"Deciding").

Exit status: 0 when every run passed its expectations, 1 when a run failed,
crashed or hung, 2 when the harness or the host failed.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if shard != "" {
				spec, err := harness.ParseShard(shard)
				if err != nil {
					return fmt.Errorf("--shard: %w", err)
				}
				if !cmd.Flags().Changed("seed") {
					return errors.New("--shard needs an explicit --seed: every shard must give run k the seed the whole plan gives it (seed+k), and each shard would otherwise pick its own random seed")
				}
				opt.Shard = spec
			}
			c, err := loadCase(cmd, args[0])
			if err != nil {
				return err
			}
			opt.CacheDir, _ = cmd.Flags().GetString("cache")
			if !cmd.Flags().Changed("seed") {
				opt.Seed = rand.Uint64() >> 16
			}
			opt.Progress = cmd.ErrOrStderr()
			// Phase lines help someone watching; in a CI log the start and
			// outcome of each run are enough.
			opt.Phases = isTerminal(cmd.ErrOrStderr())
			if opt.Decide && opt.Phases {
				// A live status block per variant under the log lines.
				live := newLiveStatus(cmd.ErrOrStderr())
				opt.Progress, opt.Status = live, live.Set
			}
			sum, err := harness.RunCase(cmd.Context(), c, opt)
			if sum != nil {
				if werr := report.Write(sum.Dir, sum); werr != nil && err == nil {
					err = werr
				}
				fmt.Fprint(cmd.OutOrStdout(), report.Markdown(sum))
				printSessionNotes(cmd.OutOrStdout(), sum)
				fmt.Fprintf(cmd.OutOrStdout(), "\nresults: %s\n", sum.Dir)
			}
			if err != nil {
				return err
			}
			return verdictError(sum)
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&opt.Variants, "variant", nil, "run only these variants (repeatable; default all)")
	f.IntVar(&opt.Runs, "runs", 1, "runs per variant")
	f.Uint64Var(&opt.Seed, "seed", 0, "base seed (run k uses seed+k; default random, recorded in the results)")
	f.DurationVar(&opt.Duration, "duration", 0, "override the case's workload duration")
	f.StringVar(&opt.Accel, "accel", "auto", "auto (probe KVM, fall back to TCG), kvm or tcg")
	f.BoolVar(&opt.Cold, "cold", false, "boot every run cold instead of restoring the kernel's snapshot (saved by its first run)")
	f.BoolVar(&opt.Keep, "keep", false, "keep the VM running after the run (one variant, --runs 1) for patchbay ssh/console; Ctrl-C ends it")
	f.IntVarP(&opt.Jobs, "jobs", "j", 0, "VMs to run at once (default: one per 2 cores and 1.5 GiB of memory)")
	f.StringVar(&opt.ResultsDir, "results", "results", "results root directory")
	f.StringVar(&opt.GuestBin, "guest-bin", "", "prebuilt static pbguest (default: build from this source tree)")
	f.StringVar(&shard, "shard", "", "run only shard i of K (0-based, e.g. 0/4) of the plan; needs --seed (see patchbay plan, patchbay merge)")
	f.BoolVar(&opt.StopEarly, "stop-early", false, "stop scheduling runs once a variant's failure rate differs from the baseline's (Fisher p < 0.05, >= 3 judged runs each; looked at after every run, that p is optimistic: --decide is the test)")
	f.BoolVar(&opt.Decide, "decide", false, "run rounds until a sequential test decides every variant against the baseline, or the budget ends (--runs does not apply)")
	f.IntVar(&opt.BudgetRuns, "budget-runs", 0, "with --decide: at most this many runs in all")
	f.DurationVar(&opt.Budget, "budget", 0, "with --decide: start no round expected to end after this much wall time from the start (builds included)")
	return addInputFlag(cmd)
}

// printSessionNotes says what summary.md does not: that the session was
// one shard, stopped early, or reran a run.
func printSessionNotes(w io.Writer, sum *record.Summary) {
	if sum.Shard != "" {
		fmt.Fprintf(w, "\nshard %s of the plan: join the shards' results with patchbay merge OUT DIR...\n", sum.Shard)
	}
	if d := sum.Decide; d != nil {
		fmt.Fprintf(w, "\ndecide (%d rounds, ended: %s):\n", d.Rounds, d.Ended)
		for _, v := range d.Variants {
			fmt.Fprintf(w, "  %s vs %s: %s - %s\n", v.Name, sum.Baseline, v.Decision, v.Reason)
		}
	}
	if sum.StoppedEarly {
		fmt.Fprintf(w, "\nstopped early: %s\n", sum.StopReason)
	}
	if sum.ReproOf != "" {
		fmt.Fprintf(w, "\nrerun of %s\n", sum.ReproOf)
	}
}

// verdictError maps the runs' outcomes onto the exit status.
func verdictError(sum *record.Summary) error {
	infra, bad := 0, 0
	for _, v := range sum.Variants {
		if v.BuildError != "" {
			bad++
		}
		for _, r := range v.Runs {
			switch r.Outcome {
			case record.Pass:
			case record.InfraError, record.Interrupted:
				infra++
			default:
				bad++
			}
		}
	}
	switch {
	case infra > 0:
		return &exitError{2, fmt.Errorf("%d run(s) hit an infrastructure error or were interrupted", infra)}
	case bad > 0:
		return &exitError{1, fmt.Errorf("%d run(s) or build(s) did not meet their expectations (see %s)", bad, filepath.Join(sum.Dir, "summary.md"))}
	}
	return nil
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
