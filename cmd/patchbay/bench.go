package main

import (
	"fmt"
	"sort"
	"strings"
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
		Short: "Ready-to-SSH time, cold and restored from a snapshot, divided by the raw boot to init (goals <= 1.3x, <= 0.25x)",
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
			restores, err := harness.BenchRestore(cmd.Context(), c, opt, n)
			if err != nil {
				return err
			}
			var rready, rfresh []time.Duration
			for i, s := range restores {
				st := s.Steps
				fmt.Fprintf(cmd.OutOrStdout(), "restore %d: ssh ready %.2fs (overlay %.2fs, QMP up %.2fs, state loaded %.2fs, SSH login %.2fs), clock and seed refreshed %.2fs, ratio to init %.2f\n",
					i+1, s.Ready.Seconds(), st.Overlay.Seconds(), (st.QMP - st.Overlay).Seconds(), (st.Running - st.QMP).Seconds(), (st.SSH - st.Running).Seconds(),
					s.Refreshed.Seconds(), s.Ready.Seconds()/mi.Seconds())
				rready, rfresh = append(rready, s.Ready), append(rfresh, s.Refreshed)
			}
			rr, rf := median(rready), median(rfresh)
			fmt.Fprintf(cmd.OutOrStdout(), "median: restore to ssh ready %.2fs = %.2fx raw boot to init (goal <= 0.25x), %.2fx cold ssh ready; refreshed %.2fs = %.2fx\n",
				rr.Seconds(), rr.Seconds()/mi.Seconds(), rr.Seconds()/mr.Seconds(), rf.Seconds(), rf.Seconds()/mi.Seconds())
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
	duty := &cobra.Command{
		Use:   "duty CASE",
		Short: "Workload seconds per run wall second, booting cold and restoring snapshots (goal >= 0.85)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, opt, err := benchSetup(cmd, args[0])
			if err != nil {
				return err
			}
			cold, restore, err := harness.BenchDuty(cmd.Context(), c, opt, runs)
			if err != nil {
				return err
			}
			for _, m := range []struct {
				name string
				d    harness.DutySample
			}{{"cold", cold}, {"restore", restore}} {
				d := m.d
				fmt.Fprintf(cmd.OutOrStdout(), "%-7s %d runs: workload %.1fs (phase wall %.1fs) / run wall %.1fs = duty %.3f (phase %.3f); %.1fs per run; session %.1fs",
					m.name, d.Runs, d.Workload.Seconds(), d.WorkloadWall.Seconds(), d.Wall.Seconds(), d.Duty(),
					d.WorkloadWall.Seconds()/d.Wall.Seconds(), d.Wall.Seconds()/float64(d.Runs), d.Session.Seconds())
				if d.Skipped > 0 {
					fmt.Fprintf(cmd.OutOrStdout(), " (%d run saved the snapshot, not counted)", d.Skipped)
				}
				fmt.Fprintln(cmd.OutOrStdout())
				var steps []string
				for _, st := range d.Steps {
					steps = append(steps, fmt.Sprintf("%s %.2fs", st.Name, st.Mean.Seconds()))
				}
				if len(steps) > 0 {
					fmt.Fprintf(cmd.OutOrStdout(), "        per run: %s\n", strings.Join(steps, ", "))
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "restore/cold duty ratio %.2fx (goal: restore duty >= 0.85, 0.9 better)\n", restore.Duty()/cold.Duty())
			return nil
		},
	}
	duty.Flags().IntVar(&runs, "runs", 4, "runs per measurement")
	for _, c := range []*cobra.Command{boot, jobs, duty} {
		addInputFlag(c)
		def := 10 * time.Second
		if c == duty {
			def = 0 // the duty of the case as shipped
		}
		c.Flags().Duration("duration", def, "workload duration (0: the case's)")
		c.Flags().String("accel", "auto", "auto, kvm or tcg")
	}
	bench.AddCommand(boot, jobs, duty)
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
