package main

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"

	"github.com/spf13/cobra"

	"patchbay/harness"
	"patchbay/report"
)

func newRunCommand() *cobra.Command {
	var opt harness.Options
	cmd := &cobra.Command{
		Use:   "run CASE",
		Short: "Build, boot and run every variant of a case, then report them side by side",
		Long: `Run builds each variant's kernel (cached), boots it in QEMU, runs the case's
workload over SSH, judges each run against the variant's expectations and
writes results/<case>/<timestamp>/ with summary.json and summary.md.

Exit status: 0 when every run passed its expectations, 1 when a run failed,
crashed or hung, 2 when the harness or the host failed.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := harness.LoadCase(args[0])
			if err != nil {
				return err
			}
			opt.CacheDir, _ = cmd.Flags().GetString("cache")
			if !cmd.Flags().Changed("seed") {
				opt.Seed = rand.Uint64() >> 16
			}
			opt.Progress = cmd.ErrOrStderr()
			sum, err := harness.RunCase(cmd.Context(), c, opt)
			if sum != nil {
				if werr := report.Write(sum.Dir, sum); werr != nil && err == nil {
					err = werr
				}
				fmt.Fprint(cmd.OutOrStdout(), report.Markdown(sum))
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
	f.BoolVar(&opt.Keep, "keep", false, "keep the VM running after the run (one variant, --runs 1) for patchbay ssh/console; Ctrl-C ends it")
	f.IntVarP(&opt.Jobs, "jobs", "j", 0, "VMs to run at once (default: one per 2 cores and 1.5 GiB of memory)")
	f.StringVar(&opt.ResultsDir, "results", "results", "results root directory")
	f.StringVar(&opt.GuestBin, "guest-bin", "", "prebuilt static pbguest (default: build from this source tree)")
	return cmd
}

// verdictError maps the runs' outcomes onto the exit status.
func verdictError(sum *harness.Summary) error {
	infra, bad := 0, 0
	for _, v := range sum.Variants {
		if v.BuildError != "" {
			bad++
		}
		for _, r := range v.Runs {
			switch r.Outcome {
			case harness.Pass:
			case harness.InfraError, harness.Interrupted:
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
