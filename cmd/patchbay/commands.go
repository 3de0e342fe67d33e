package main

import (
	"errors"

	"github.com/spf13/cobra"

	"patchbay/harness"
	"patchbay/images"
)

// exitError carries a specific exit code (1: an expectation broke,
// 2: the harness or the host failed).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func exitCode(err error) int {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 2
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "patchbay",
		Short:         "Test Linux kernel patch series in QEMU, variant against variant",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			return checkNumericFlags(cmd)
		},
	}
	root.PersistentFlags().String("cache", harness.DefaultCacheDir(), "cache for kernels, images and ccache (outside the repository; $PATCHBAY_CACHE)")
	root.AddCommand(newImageCommand(), newRunCommand(), newReportCommand(), newSSHCommand(), newConsoleCommand(), withVariantBench(newBenchCommand()), newCacheCommand(), newBuildCommand(), newTriageCommand(),
		newPlanCommand(), newMergeCommand(), newReproCommand(), newBisectCommand())
	root.AddCommand(newReproducerCommand(), newMinimizeCommand())
	return root
}

func newImageCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "image",
		Short: "Build (or find in the cache) the guest root image",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cache, _ := cmd.Flags().GetString("cache")
			b := &images.Builder{CacheDir: cache, Progress: cmd.ErrOrStderr()}
			im, err := b.Ensure(cmd.Context(), images.DefaultRecipe())
			if err != nil {
				return err
			}
			cmd.Println(im.Root)
			return nil
		},
	}
}

// addInputFlag gives a case-loading command --input NAME=VALUE (see
// harness.Input): a kernel tree or a series the case cannot ship.
func addInputFlag(cmd *cobra.Command) *cobra.Command {
	cmd.Flags().StringArray("input", nil, "set a case input, NAME=VALUE (repeatable; overrides the case's .local.yaml), e.g. --input series=ext4-iomap.mbox")
	return cmd
}

// loadCase loads the case at path with the command's --input values.
func loadCase(cmd *cobra.Command, path string) (*harness.Case, error) {
	flags, _ := cmd.Flags().GetStringArray("input")
	inputs, err := harness.ParseInputFlags(flags)
	if err != nil {
		return nil, err
	}
	return harness.LoadCaseWith(path, inputs)
}
