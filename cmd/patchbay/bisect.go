package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"patchbay/bisect"
	"patchbay/harness"
)

func newBisectCommand() *cobra.Command {
	var (
		opt       harness.Options
		variant   string
		good, bad int
		verify    bool
		rule      = bisect.DefaultSPRT()
		maxSkips  int
	)
	cmd := &cobra.Command{
		Use:   "bisect CASE --variant V",
		Short: "Find the first patch of a variant's stack at which its failure appears",
		Long: `Bisect runs the variant's workload and expectations on kernels built from
prefixes of its patch stack (prefix n = the first n patches; each an
incremental, cached build) and halves the interval between a good prefix
(--good, default 0: the base) and a bad one (--bad, default the whole stack).

Failures are probabilistic, so each step runs its prefix until a sequential
probability ratio test decides "bad" (fails at about --p-bad) or "good"
(fails at most at --p-good) with error rates --alpha and --beta, or until
--max-runs (then by the sign of the evidence). A run counts as failed when it
ends fail, crash or hang; infra and boot errors are not counted. --verify
decides both ends by runs before searching.

The culprit is reported with a confidence (1 minus the sum of the steps'
error bounds; it holds when the failure rate is monotone in the prefix and
each prefix fails at most at --p-good or at least at --p-bad) and each step's
runs and failures; bisect.json beside the runs keeps them.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if variant == "" {
				return errors.New("--variant is required")
			}
			if err := rule.Check(); err != nil {
				return err
			}
			c, err := loadCase(cmd, args[0])
			if err != nil {
				return err
			}
			if _, ok := c.Variants[variant]; !ok {
				return fmt.Errorf("--variant %s: not a variant of %s (have %v)", variant, c.File, c.VariantNames())
			}
			stack, err := c.PatchStack(variant)
			if err != nil {
				return err
			}
			n := len(stack)
			if !cmd.Flags().Changed("bad") {
				bad = n
			}
			if n == 0 {
				return fmt.Errorf("variant %s has no patches to bisect", variant)
			}
			if good < 0 || bad > n || good >= bad {
				return fmt.Errorf("--good %d, --bad %d: want 0 <= good < bad <= %d (patches in %s's stack)", good, bad, n, variant)
			}
			opt.CacheDir, _ = cmd.Flags().GetString("cache")
			if !cmd.Flags().Changed("seed") {
				opt.Seed = rand.Uint64() >> 16
			}
			opt.Progress = cmd.ErrOrStderr()
			o, err := harness.NewBisectOracle(cmd.Context(), c, variant, opt)
			if err != nil {
				return err
			}
			res, serr := bisect.Search(cmd.Context(), o, rule, good, bad, verify, maxSkips)
			out := struct {
				Case    string        `json:"case"`
				Variant string        `json:"variant"`
				Seed    uint64        `json:"seed"`
				Rule    bisect.SPRT   `json:"rule"`
				Stack   []string      `json:"stack"`
				Result  bisect.Result `json:"result"`
				Error   string        `json:"error,omitempty"`
			}{c.Name, variant, opt.Seed, rule, o.Stack, res, ""}
			if serr != nil {
				out.Error = serr.Error()
			}
			data, _ := json.MarshalIndent(out, "", "  ")
			if err := os.WriteFile(filepath.Join(o.Dir(), "bisect.json"), append(data, '\n'), 0o644); err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "| prefix | runs | failed | decision |\n|---|---|---|---|\n")
			for _, s := range res.Steps {
				d := string(s.Decision)
				if s.Assumed {
					d += " (given)"
				}
				fmt.Fprintf(w, "| %d | %d | %d | %s |\n", s.Prefix, s.Runs, s.Fails, d)
			}
			if serr != nil {
				fmt.Fprintf(w, "\nresults: %s\n", o.Dir())
				return &exitError{2, serr}
			}
			fmt.Fprintf(w, "\nfirst bad patch: #%d %s (confidence >= %.2f)\nresults: %s\n",
				res.Culprit, filepath.Base(o.Stack[res.Culprit-1]), res.Confidence, o.Dir())
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&variant, "variant", "", "the variant whose stack to bisect (required)")
	f.IntVar(&good, "good", 0, "a prefix length known (or, with --verify, checked) to be good")
	f.IntVar(&bad, "bad", 0, "a prefix length known to be bad (default: the whole stack)")
	f.BoolVar(&verify, "verify", false, "decide both ends by runs before searching")
	f.Float64Var(&rule.PGood, "p-good", rule.PGood, "failure rate of a good prefix (noise)")
	f.Float64Var(&rule.PBad, "p-bad", rule.PBad, "failure rate of a bad prefix")
	f.Float64Var(&rule.Alpha, "alpha", rule.Alpha, "target P(a good prefix is called bad)")
	f.Float64Var(&rule.Beta, "beta", rule.Beta, "target P(a bad prefix is called good)")
	f.IntVar(&rule.MaxRuns, "max-runs", rule.MaxRuns, "runs per step at most")
	f.IntVar(&maxSkips, "max-skips", 3, "runs per step that may measure nothing (infra, boot errors) before giving up")
	f.Uint64Var(&opt.Seed, "seed", 0, "base seed (run a of prefix n uses seed+1000n+a; default random)")
	f.DurationVar(&opt.Duration, "duration", 0, "override the case's workload duration")
	f.StringVar(&opt.Accel, "accel", "auto", "auto (probe KVM, fall back to TCG), kvm or tcg")
	f.StringVar(&opt.ResultsDir, "results", "results", "results root directory")
	f.StringVar(&opt.GuestBin, "guest-bin", "", "prebuilt static pbguest (default: build from this source tree)")
	return addInputFlag(cmd)
}
