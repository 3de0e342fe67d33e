package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// atLeastOne are count flags whose explicit 0 means nothing.
var atLeastOne = map[string]bool{"runs": true, "n": true}

// checkNumericFlags refuses negative numbers and durations given on the
// command line (and a 0 where it means nothing), instead of letting a
// default quietly take their place.
func checkNumericFlags(cmd *cobra.Command) error {
	var err error
	cmd.Flags().Visit(func(f *pflag.Flag) {
		if err != nil {
			return
		}
		switch f.Value.Type() {
		case "int", "int64":
			var n int64
			fmt.Sscan(f.Value.String(), &n)
			if n < 0 {
				err = fmt.Errorf("--%s %d: must not be negative", f.Name, n)
			} else if n == 0 && atLeastOne[f.Name] {
				err = fmt.Errorf("--%s 0: must be at least 1", f.Name)
			}
		case "duration":
			d, perr := time.ParseDuration(f.Value.String())
			if perr == nil && d <= 0 {
				err = fmt.Errorf("--%s %s: must be positive (leave it out for the default)", f.Name, f.Value)
			}
		}
	})
	return err
}
