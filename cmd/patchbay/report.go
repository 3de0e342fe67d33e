package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"patchbay/report"
)

func newReportCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "report DIR",
		Short: "Render every report of a results directory again from its summary.json",
		Long: `Report re-reads DIR/summary.json (the run records are embedded in it) and
writes summary.md, report.html, junit.xml and kcidb.json in DIR again, so that
a results directory picks up a newer renderer. summary.json itself is left as
it is: it is the record, and fields a newer patchbay wrote survive. A
directory of a session that was killed renders too: the finished runs, and
the planned ones that never finished named as such. It prints the Markdown
summary.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := args[0]
			sum, err := report.Read(dir)
			if err != nil {
				return err
			}
			if err := report.WriteViews(dir, sum); err != nil {
				return fmt.Errorf("re-rendering %s: %w", dir, err)
			}
			fmt.Fprint(cmd.OutOrStdout(), report.Markdown(sum))
			return nil
		},
	}
}
