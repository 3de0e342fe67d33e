package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"patchbay/harness"
	"patchbay/record"
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
			if err := checkMergeOut(out, dirs); err != nil {
				return err
			}
			var parts []*record.Summary
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
			if err := buildMerge(out, sum, parts); err != nil {
				return fmt.Errorf("merge into %s: %w", out, err)
			}
			sum.Dir = out
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

// buildMerge links the run folders and renders the reports in a temporary
// directory beside out, then renames it to out (replacing an empty out):
// a merge that fails half way leaves out as it was, and no temporary
// directory.
func buildMerge(out string, sum *record.Summary, parts []*record.Summary) (err error) {
	parent := filepath.Dir(filepath.Clean(out))
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(out)+".merge-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	if err := harness.LinkRuns(tmp, parts); err != nil {
		return err
	}
	sum.Dir = tmp
	if err := report.Write(tmp, sum); err != nil {
		return err
	}
	// os.Rename refuses an existing directory; out is empty (checkMergeOut),
	// and os.Remove removes only an empty one.
	if err := os.Remove(out); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.Rename(tmp, out); err != nil {
		return err
	}
	if d, err := os.Open(parent); err == nil {
		d.Sync() // best effort: the rename is done either way
		d.Close()
	}
	return nil
}

// checkMergeOut refuses an OUT that holds anything already or is one of
// the inputs (or inside one).
func checkMergeOut(out string, dirs []string) error {
	entries, err := os.ReadDir(out)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("merge: %w", err)
	case len(entries) > 0:
		return fmt.Errorf("merge: %s is not empty: give a new directory", out)
	}
	absOut, err := filepath.Abs(out)
	if err != nil {
		return fmt.Errorf("merge: %w", err)
	}
	for _, d := range dirs {
		abs, err := filepath.Abs(d)
		if err != nil {
			return fmt.Errorf("merge: %w", err)
		}
		if rel, err := filepath.Rel(abs, absOut); err == nil && filepath.IsLocal(rel) {
			return fmt.Errorf("merge: OUT %s is inside the input %s", out, d)
		}
	}
	return nil
}
