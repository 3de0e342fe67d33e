package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"patchbay/images"
	"patchbay/kernel"
)

func newBuildCommand() *cobra.Command {
	var (
		variants  []string
		withImage bool
	)
	cmd := &cobra.Command{
		Use:   "build CASE",
		Short: "Build (or find in the cache) the kernel of every variant of a case",
		Long: `Build (or find in the cache) the kernel of every variant of a case, and with
--image the case's guest image too: everything a later run of the case needs,
so a CI build stage can fill the cache once for every shard.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := loadCase(cmd, args[0])
			if err != nil {
				return err
			}
			cache, _ := cmd.Flags().GetString("cache")
			specs, err := c.KernelSpecs(variants)
			if err != nil {
				return err
			}
			b := &kernel.Builder{CacheDir: cache, Progress: cmd.ErrOrStderr()}
			failed := 0
			for _, s := range specs {
				a, err := b.Build(cmd.Context(), s)
				if err != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "variant %s: %v\n", s.Name, err)
					failed++
					continue
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s\t%s\t%s\n", s.Name, a.Release, a.BzImage)
			}
			if withImage {
				im, err := (&images.Builder{CacheDir: cache, Progress: cmd.ErrOrStderr()}).Ensure(cmd.Context(), c.ImageRecipe())
				if err != nil {
					return fmt.Errorf("guest image: %w", err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "image\t%s\t%s\n", im.Key, im.Root)
			}
			if failed > 0 {
				return &exitError{1, fmt.Errorf("%d variant(s) did not build", failed)}
			}
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&variants, "variant", nil, "build only these variants (default all)")
	cmd.Flags().BoolVar(&withImage, "image", false, "also build the case's guest image")
	return addInputFlag(cmd)
}
