package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"patchbay/harness"
)

// planJob is one row of `patchbay plan --json`.
type planJob struct {
	Job     int    `json:"job"` // position in the plan
	Variant string `json:"variant"`
	Index   int    `json:"index"`
	Seed    uint64 `json:"seed"`
	Shard   *int   `json:"shard,omitempty"` // with --shards
}

// planOutput is `patchbay plan --json`.
type planOutput struct {
	Case     string    `json:"case"`
	CaseFile string    `json:"case_file"`
	Baseline string    `json:"baseline"`
	Variants []string  `json:"variants"`
	Runs     int       `json:"runs"`
	Seed     uint64    `json:"seed"`
	Shards   int       `json:"shards,omitempty"`
	Jobs     []planJob `json:"jobs"`
}

func newPlanCommand() *cobra.Command {
	var (
		variants []string
		runs     int
		shards   int
		seed     uint64
		asJSON   bool
	)
	cmd := &cobra.Command{
		Use:   "plan CASE",
		Short: "Print the run matrix (variant, run index, seed) and, with --shards K, each job's shard",
		Long: `Plan prints every job 'patchbay run' would schedule, in its order: run 0 of
every variant, then run 1, ... Run k uses seed+k. With --shards K, job j goes to
shard j % K: 'patchbay run CASE --seed S --shard i/K' runs the jobs of shard i,
and 'patchbay merge' joins the shards' results directories. run computes the
same plan (harness.Plan), so the two cannot disagree.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if runs < 1 {
				return errors.New("--runs must be at least 1")
			}
			if shards < 0 {
				return errors.New("--shards must be at least 1")
			}
			c, err := loadCase(cmd, args[0])
			if err != nil {
				return err
			}
			names, err := c.SelectVariants(variants)
			if err != nil {
				return err
			}
			out := planOutput{
				Case: c.Name, CaseFile: c.File, Baseline: c.Baseline, Variants: names,
				Runs: runs, Seed: seed, Shards: shards, Jobs: []planJob{},
			}
			for j, job := range harness.Plan(c, names, runs, seed) {
				row := planJob{Job: j, Variant: job.Variant, Index: job.Index, Seed: job.Seed}
				if shards > 0 {
					s := harness.ShardOf(j, shards)
					row.Shard = &s
				}
				out.Jobs = append(out.Jobs, row)
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if err := enc.Encode(out); err != nil {
					return fmt.Errorf("writing the plan: %w", err)
				}
				return nil
			}
			if !cmd.Flags().Changed("seed") {
				fmt.Fprintln(cmd.ErrOrStderr(), "note: no --seed: seeds shown for base seed 0; run picks a random base seed unless given --seed")
			}
			return printPlan(cmd.OutOrStdout(), args[0], variants, out)
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&variants, "variant", nil, "only these variants (repeatable; default all, baseline first)")
	f.IntVar(&runs, "runs", 1, "runs per variant")
	f.IntVar(&shards, "shards", 0, "split the plan into K shards (job j -> shard j % K)")
	f.Uint64Var(&seed, "seed", 0, "base seed (run k uses seed+k)")
	f.BoolVar(&asJSON, "json", false, "print the plan as JSON")
	return addInputFlag(cmd)
}

func printPlan(w io.Writer, casePath string, variants []string, p planOutput) error {
	fmt.Fprintf(w, "case %s: %d variant(s) x %d run(s) = %d jobs, seed %d", p.Case, len(p.Variants), p.Runs, len(p.Jobs), p.Seed)
	if p.Shards > 0 {
		fmt.Fprintf(w, ", %d shards", p.Shards)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	header := "job\tvariant\trun\tseed"
	if p.Shards > 0 {
		header += "\tshard"
	}
	fmt.Fprintln(tw, header)
	for _, j := range p.Jobs {
		line := fmt.Sprintf("%d\t%s\t%d\t%d", j.Job, j.Variant, j.Index, j.Seed)
		if j.Shard != nil {
			line += fmt.Sprintf("\t%d", *j.Shard)
		}
		fmt.Fprintln(tw, line)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("writing the plan: %w", err)
	}
	if p.Shards > 0 {
		var extra string
		for _, v := range variants {
			extra += " --variant " + v
		}
		fmt.Fprintln(w)
		for i := 0; i < p.Shards; i++ {
			n := 0
			for _, j := range p.Jobs {
				if *j.Shard == i {
					n++
				}
			}
			fmt.Fprintf(w, "shard %d (%d jobs): patchbay run %s --runs %d --seed %d --shard %d/%d%s\n",
				i, n, casePath, p.Runs, p.Seed, i, p.Shards, extra)
		}
	}
	return nil
}
