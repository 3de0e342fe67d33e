package main

import (
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"patchbay/harness"
	"patchbay/minimize"
	"patchbay/rundir"
)

func newMinimizeCommand() *cobra.Command {
	var (
		out, casePath, guestBin, accel string
		s                              minimize.Search
	)
	cmd := &cobra.Command{
		Use:   "minimize RUNDIR",
		Short: "Shrink a failing run's workload while the failure stays reproducible at a stated rate",
		Long: `Minimize reads the failing run RUNDIR (<results>/<variant>/<n>/) and shrinks
its workload greedily, one parameter at a time (halve duration, files, blocks,
epochs, the defrag range; remove a writer or defrag worker; drop read-backs,
msync, fsync, fdatasync, eviction, rejournal). A candidate is kept when at
least k of n runs fail the same way as the original (same outcome and a
reason of the same kind: data, fsck, a finding's title, ...); runs stop as
soon as the rule is decided. The smallest workload is run --measure times to
measure its rate, and written as DIR/case.yaml (one variant, absolute patch
and fragment paths: it loads with the normal loader) beside DIR/minimize.json
(every candidate and its runs). Candidates' results go under DIR/runs.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			run, err := rundir.Load(args[0], casePath)
			if err != nil {
				return fmt.Errorf("minimize: %w", err)
			}
			cache, _ := cmd.Flags().GetString("cache")
			bin, err := harness.EnsureGuest(cmd.Context(), cache, guestBin)
			if err != nil {
				return fmt.Errorf("minimize: %w", err)
			}
			if out == "" {
				out = filepath.Join(args[0], "minimized")
			}
			s.Log = cmd.ErrOrStderr()
			opt := harness.Options{CacheDir: cache, Accel: accel, GuestBin: bin, Progress: cmd.ErrOrStderr()}
			rep, err := minimize.Minimize(cmd.Context(), run, s, opt, out)
			if rep != nil && rep.Result != nil && err == nil {
				rep.Summary(cmd.OutOrStdout())
				fmt.Fprintf(cmd.OutOrStdout(), "case: %s\n", filepath.Join(out, minimize.CaseFile))
			}
			if err != nil {
				return fmt.Errorf("minimize: %w", err)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVarP(&s.Rule.N, "runs", "n", 3, "runs per candidate (n)")
	f.IntVarP(&s.Rule.K, "fails", "k", 2, "failures of n a candidate needs to be kept (k)")
	f.IntVar(&s.MaxCandidates, "max-candidates", 12, "candidates to try at most (0: until nothing shrinks)")
	f.IntVar(&s.MeasureRuns, "measure", 0, "runs that measure the smallest case's rate (0: n)")
	f.StringVarP(&out, "output", "o", "", "directory for case.yaml, minimize.json and runs/ (default RUNDIR/minimized)")
	f.StringVar(&casePath, "case", "", "case folder or case.yaml (default: case_file from summary.json)")
	f.StringVar(&guestBin, "guest-bin", "", "prebuilt static pbguest (default: build from this source tree)")
	f.StringVar(&accel, "accel", "auto", "auto (probe KVM, fall back to TCG), kvm or tcg")
	return cmd
}
