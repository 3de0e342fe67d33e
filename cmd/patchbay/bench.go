package main

import (
	"fmt"
	"sort"
	"time"

	"github.com/spf13/cobra"

	"patchbay/harness"
)

func newBenchCommand() *cobra.Command {
	bench := &cobra.Command{
		Use:   "bench",
		Short: "Measure patchbay itself and print ratios against its goals",
	}
	var n int
	boot := &cobra.Command{
		Use:   "boot CASE",
		Short: "Ready-to-SSH time divided by the raw boot to init (goal <= 1.3x)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, opt, err := benchSetup(cmd, args[0])
			if err != nil {
				return err
			}
			samples, err := harness.BenchBoot(cmd.Context(), c, opt, n)
			if err != nil {
				return err
			}
			var inits, readies []time.Duration
			for i, s := range samples {
				fmt.Fprintf(cmd.OutOrStdout(), "boot %d: init %.2fs, ssh ready %.2fs, first command %.2fs, guest upload %.2fs, ratio %.2f\n",
					i+1, s.Init.Seconds(), s.Ready.Seconds(), s.FirstCmd.Seconds(), s.Upload.Seconds(), s.Ready.Seconds()/s.Init.Seconds())
				inits, readies = append(inits, s.Init), append(readies, s.Ready)
			}
			mi, mr := median(inits), median(readies)
			fmt.Fprintf(cmd.OutOrStdout(), "median: init %.2fs, ssh ready %.2fs, ratio %.2fx (goal <= 1.3x)\n",
				mi.Seconds(), mr.Seconds(), mr.Seconds()/mi.Seconds())
			return nil
		},
	}
	boot.Flags().IntVarP(&n, "n", "n", 5, "boots to measure")
	var runs int
	jobs := &cobra.Command{
		Use:   "jobs CASE",
		Short: "Runs per hour with --jobs 2 divided by --jobs 1 (goal >= 1.7x)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, opt, err := benchSetup(cmd, args[0])
			if err != nil {
				return err
			}
			one, two, err := harness.BenchJobs(cmd.Context(), c, opt, runs)
			if err != nil {
				return err
			}
			r1 := float64(runs) / one.Hours()
			r2 := float64(runs) / two.Hours()
			fmt.Fprintf(cmd.OutOrStdout(), "jobs 1: %d runs in %s (%.0f runs/h)\njobs 2: %d runs in %s (%.0f runs/h)\nratio %.2fx (goal >= 1.7x)\n",
				runs, one.Round(time.Second), r1, runs, two.Round(time.Second), r2, r2/r1)
			return nil
		},
	}
	jobs.Flags().IntVar(&runs, "runs", 4, "runs per measurement")
	for _, c := range []*cobra.Command{boot, jobs} {
		addInputFlag(c)
		c.Flags().Duration("duration", 10*time.Second, "workload duration")
		c.Flags().String("accel", "auto", "auto, kvm or tcg")
	}
	bench.AddCommand(boot, jobs)
	return bench
}

func benchSetup(cmd *cobra.Command, casePath string) (*harness.Case, harness.Options, error) {
	c, err := loadCase(cmd, casePath)
	if err != nil {
		return nil, harness.Options{}, err
	}
	var opt harness.Options
	opt.CacheDir, _ = cmd.Flags().GetString("cache")
	opt.Duration, _ = cmd.Flags().GetDuration("duration")
	opt.Accel, _ = cmd.Flags().GetString("accel")
	opt.Seed = 1
	opt.Progress = cmd.ErrOrStderr()
	return c, opt, nil
}

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}
