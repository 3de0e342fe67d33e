package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"patchbay/kernel"
)

// withVariantBench adds "bench variant" to the bench command.
func withVariantBench(bench *cobra.Command) *cobra.Command {
	var variant, file string
	cmd := &cobra.Command{
		Use:   "variant CASE",
		Short: "Build time of a one-file variant divided by make alone (goal <= 1.2x); cache-hit time (goal < 2 s)",
		Long: `Builds a fresh variant of the case's baseline (or --variant) that adds a
random one-line comment to --file, on the already built base; then the same
variant again (a cache hit); then times make alone recompiling that file and
relinking in a prepared copy of the base tree. The generated kernel is
removed from the cache afterwards.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := loadCase(cmd, args[0])
			if err != nil {
				return err
			}
			if variant == "" {
				variant = c.VariantNames()[0]
			}
			specs, err := c.KernelSpecs([]string{variant})
			if err != nil {
				return err
			}
			spec := specs[0]
			if spec.Patches, err = c.PatchStack(variant); err != nil {
				return err
			}
			cache, _ := cmd.Flags().GetString("cache")
			b := &kernel.Builder{CacheDir: cache, Progress: cmd.ErrOrStderr()}
			res, err := b.BenchVariant(cmd.Context(), spec, file)
			if err != nil {
				return err
			}
			printVariantBench(cmd.OutOrStdout(), variant, res)
			return nil
		},
	}
	cmd.Flags().StringVar(&variant, "variant", "", "the variant to add the one-line patch to (default: the baseline)")
	cmd.Flags().StringVar(&file, "file", "fs/ext4/move_extent.c", "the file the generated patch touches")
	bench.AddCommand(addInputFlag(cmd))
	return bench
}

func printVariantBench(w io.Writer, variant string, r *kernel.VariantBench) {
	fmt.Fprintf(w, "variant %s + one-line comment in %s:\n", variant, r.File)
	fmt.Fprintf(w, "  fresh variant build: %6.2fs\n", r.Variant.Seconds())
	fmt.Fprintf(w, "  make alone:          %6.2fs (touch %s in a prepared tree, recompile and relink)\n", r.Make.Seconds(), r.File)
	fmt.Fprintf(w, "  ratio %.2fx (goal <= 1.2x)\n", r.Ratio())
	fmt.Fprintf(w, "  cache hit:           %6.2fs to a ready bzImage (goal < 2s)\n", r.Hit.Seconds())
}
