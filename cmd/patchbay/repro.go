package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"patchbay/harness"
	"patchbay/record"
	"patchbay/report"
	"patchbay/rundir"

	"patchbay/safefile"
)

// seedNote says what a seed reproduces and what it does not.
const seedNote = "a seed pins the workload (files, sizes, offsets, the order of each thread's operations), not the interleaving of the guest's threads: a race can crash under one seed in one session and pass under it in the next (host load changes the timing); judge a race over several runs (run --runs N), not one"

func newReproCommand() *cobra.Command {
	var (
		opt      harness.Options
		casePath string
	)
	cmd := &cobra.Command{
		Use:   "repro RUNDIR",
		Short: "Run one recorded run again (same case, variant, index, seed and workload) into a new results directory",
		Long: `Repro reads RUNDIR/run.json (case, variant, run index, seed, kernel key) and
the summary.json of the results directory it belongs to (case file, workload
as run, base seed), loads the case again, builds the variant's kernel (cached)
and warns when its key differs from the recorded one (the source, patches,
fragments or compiler changed), then runs that single (variant, index, seed)
into a new results directory and prints where. The VM sizes, kernel command
line and expectations come from the case file as it is now.

` + seedNote + `

Exit status as for run: 0 when the run met its expectations, 1 when it failed,
crashed or hung, 2 when the harness or the host failed.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			flags, _ := cmd.Flags().GetStringArray("input")
			inputs, err := harness.ParseInputFlags(flags)
			if err != nil {
				return err
			}
			c, rec, err := loadRepro(args[0], casePath, inputs)
			if err != nil {
				return err
			}
			opt.CacheDir, _ = cmd.Flags().GetString("cache")
			opt.Progress = cmd.ErrOrStderr()
			opt.Variants = []string{rec.Variant}
			opt.Only = []record.Job{{Variant: rec.Variant, Index: rec.Index, Seed: rec.Seed}}
			opt.Seed = rec.Seed - uint64(rec.Index)
			opt.Jobs = 1
			if rec.Kernel != "" {
				opt.ExpectKernel = map[string]string{rec.Variant: rec.Kernel}
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "repro: %s %s#%d seed %d (was %s)\n", c.Name, rec.Variant, rec.Index, rec.Seed, rec.Outcome)
			fmt.Fprintf(cmd.ErrOrStderr(), "repro: %s\n", seedNote)
			sum, err := harness.RunCase(cmd.Context(), c, opt)
			if sum == nil {
				return err
			}
			sum.ReproOf = args[0]
			if werr := report.Write(sum.Dir, sum); werr != nil && err == nil {
				err = werr
			}
			w := cmd.OutOrStdout()
			fmt.Fprint(w, report.Markdown(sum))
			printSessionNotes(w, sum)
			for _, v := range sum.Variants {
				if v.Kernel != nil && rec.Kernel != "" && v.Kernel.Key != rec.Kernel {
					fmt.Fprintf(w, "\nwarning: kernel %s now, %s when recorded: this is not the same kernel\n", v.Kernel.Key, rec.Kernel)
				}
				for _, r := range v.Runs {
					fmt.Fprintf(w, "\n%s#%d seed %d: %s now, %s when recorded\nresults: %s\n",
						r.Variant, r.Index, r.Seed, r.Outcome, rec.Outcome, filepath.Join(sum.Dir, r.Dir))
					if r.Outcome != rec.Outcome {
						fmt.Fprintf(w, "note: %s\n", seedNote)
					}
				}
			}
			if err != nil {
				return err
			}
			return verdictError(sum)
		},
	}
	f := cmd.Flags()
	f.StringVar(&casePath, "case", "", "case folder or case.yaml (default: case_file from summary.json)")
	f.StringVar(&opt.Accel, "accel", "auto", "auto (probe KVM, fall back to TCG), kvm or tcg")
	f.BoolVar(&opt.Keep, "keep", false, "keep the VM running after the run for patchbay ssh/console; Ctrl-C ends it")
	f.StringVar(&opt.ResultsDir, "results", "results", "results root directory")
	f.StringVar(&opt.GuestBin, "guest-bin", "", "prebuilt static pbguest (default: build from this source tree)")
	return addInputFlag(cmd)
}

// loadRepro reads the run record of runDir and its results directory's
// summary, and loads the case with the workload the run used.
func loadRepro(runDir, casePath string, inputs map[string]string) (*harness.Case, *record.RunRecord, error) {
	data, err := safefile.ReadFile(filepath.Join(runDir, "run.json"), safefile.RecordCap)
	if err != nil {
		return nil, nil, fmt.Errorf("repro: %s is not a run folder (<results>/<variant>/<n>/): %w", runDir, err)
	}
	var rec record.RunRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		return nil, nil, fmt.Errorf("repro: %s: %w", filepath.Join(runDir, "run.json"), err)
	}
	if rec.Case == "" || rec.Variant == "" {
		return nil, nil, fmt.Errorf("repro: %s: no case or variant recorded", filepath.Join(runDir, "run.json"))
	}
	resDir := rundir.ResultsDirOf(runDir, rec.Dir)
	sum, err := report.Read(resDir)
	if err != nil {
		return nil, nil, fmt.Errorf("repro: the results directory of %s: %w", runDir, err)
	}
	if sum.Case != rec.Case {
		return nil, nil, fmt.Errorf("repro: %s is a run of case %q but %s/summary.json is case %q", runDir, rec.Case, resDir, sum.Case)
	}
	if casePath == "" {
		casePath = sum.CaseFile
		if _, err := os.Stat(casePath); errors.Is(err, fs.ErrNotExist) {
			return nil, nil, fmt.Errorf("repro: case file %s (recorded relative to where patchbay ran) not found: pass --case", casePath)
		}
	}
	// The inputs the session ran with, unless given again.
	if len(inputs) == 0 {
		inputs = sum.Inputs
	}
	c, err := harness.LoadCaseWith(casePath, inputs)
	if err != nil {
		return nil, nil, fmt.Errorf("repro: %w", err)
	}
	if c.Name != rec.Case {
		return nil, nil, fmt.Errorf("repro: %s is case %q but the run is of case %q", c.File, c.Name, rec.Case)
	}
	if _, ok := c.Variants[rec.Variant]; !ok {
		return nil, nil, fmt.Errorf("repro: %s has no variant %q any more", c.File, rec.Variant)
	}
	// The workload as run, --duration and all: the seed drives it.
	if sum.Workload.Files > 0 {
		c.Workload = sum.Workload
	}
	return c, &rec, nil
}
