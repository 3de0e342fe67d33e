package main

import (
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"patchbay/harness"
	"patchbay/reproducer"
	"patchbay/rundir"
)

func newReproducerCommand() *cobra.Command {
	var out, casePath, guestBin string
	cmd := &cobra.Command{
		Use:   "reproducer RUNDIR",
		Short: "Write a self-contained directory that reproduces a recorded run without patchbay",
		Long: `Reproducer reads RUNDIR (<results>/<variant>/<n>/) and writes DIR (default
RUNDIR/reproducer) with the static pbguest binary, run.sh (POSIX sh: the run's
mkfs, mount, pbguest command lines and seed, verify passes and e2fsck, judged
by the variant's expectations; ./run.sh DEVICE prints PASS or FAIL), the
kernel .config, the patch stack with sha256 sums, and a README saying how to
run it on any VM or machine.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			run, err := rundir.Load(args[0], casePath)
			if err != nil {
				return fmt.Errorf("reproducer: %w", err)
			}
			cache, _ := cmd.Flags().GetString("cache")
			bin, err := harness.EnsureGuest(cmd.Context(), cache, guestBin)
			if err != nil {
				return fmt.Errorf("reproducer: %w", err)
			}
			if out == "" {
				out = filepath.Join(args[0], "reproducer")
			}
			if err := reproducer.Write(reproducer.FromRun(run, bin), out); err != nil {
				return fmt.Errorf("reproducer: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s\nrun it as root on the variant's kernel: %s DEVICE\n", out, filepath.Join(out, reproducer.ScriptName))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&out, "output", "o", "", "directory to write (must not exist or be empty; default RUNDIR/reproducer)")
	f.StringVar(&casePath, "case", "", "case folder or case.yaml (default: case_file from summary.json)")
	f.StringVar(&guestBin, "guest-bin", "", "prebuilt static pbguest (default: build from this source tree)")
	return cmd
}
