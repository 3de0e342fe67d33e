package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"patchbay/harness"
	"patchbay/report"
)

func newMergeCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "merge OUT DIR...",
		Short: "Join the results directories of shards (run --shard i/K) into OUT and render every report there",
		Long: `Merge reads each DIR/summary.json, checks that the directories ran parts of
one plan (same case, seed, workload and guest image, the same kernel for each
variant, shards of the same K and --runs, no run present twice), hard-links
(or copies) every run folder <variant>/<n>/ into OUT and writes summary.json,
summary.md, report.html, junit.xml and kcidb.json there. OUT must not exist or
be empty. Missing shards are allowed: summary.json then records the shards
present (e.g. "shard": "0,2/4") and merge says which are missing.

Exit status, as for run: 0 when every merged run met its expectations, 1 when
a run failed, crashed or hung, 2 when a run hit an infrastructure error or the
merge itself failed.`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			out, dirs := args[0], args[1:]
			existed, err := checkMergeOut(out, dirs)
			if err != nil {
				return err
			}
			var parts []*harness.Summary
			for _, d := range dirs {
				s, err := report.Read(d)
				if err != nil {
					return fmt.Errorf("merge: %w", err)
				}
				parts = append(parts, s)
			}
			sum, err := harness.Merge(parts)
			if err != nil {
				return err
			}
			if err := os.MkdirAll(out, 0o755); err != nil {
				return fmt.Errorf("merge: %w", err)
			}
			sum.Dir = out
			err = harness.LinkRuns(out, parts)
			if err == nil {
				err = report.Write(out, sum)
			}
			if err != nil {
				if !existed {
					os.RemoveAll(out) // made here, and empty before: leave no half merge
				}
				return fmt.Errorf("merge into %s: %w", out, err)
			}
			w := cmd.OutOrStdout()
			fmt.Fprint(w, report.Markdown(sum))
			if sum.Shard != "" {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: not every shard is here: merged shards %s\n", sum.Shard)
			}
			if sum.StoppedEarly {
				fmt.Fprintf(w, "\nstopped early: %s\n", sum.StopReason)
			}
			fmt.Fprintf(w, "\nmerged %d results directories: %s\n", len(dirs), out)
			return verdictError(sum)
		},
	}
}

// checkMergeOut refuses an OUT that holds anything already or is one of
// the inputs (or inside one); it reports whether OUT exists.
func checkMergeOut(out string, dirs []string) (bool, error) {
	entries, err := os.ReadDir(out)
	existed := err == nil
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return false, fmt.Errorf("merge: %w", err)
	case len(entries) > 0:
		return true, fmt.Errorf("merge: %s is not empty: give a new directory", out)
	}
	absOut, err := filepath.Abs(out)
	if err != nil {
		return existed, fmt.Errorf("merge: %w", err)
	}
	for _, d := range dirs {
		abs, err := filepath.Abs(d)
		if err != nil {
			return existed, fmt.Errorf("merge: %w", err)
		}
		if rel, err := filepath.Rel(abs, absOut); err == nil && filepath.IsLocal(rel) {
			return existed, fmt.Errorf("merge: OUT %s is inside the input %s", out, d)
		}
	}
	return existed, nil
}
