package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"patchbay/triage"
	"patchbay/triage/symbolize"

	"patchbay/safefile"
)

// triagedFile is one input's findings, as printed with --json.
type triagedFile struct {
	File     string           `json:"file"`
	Findings []triage.Finding `json:"findings"`
}

func newTriageCommand() *cobra.Command {
	var asJSON, full bool
	var vmlinux string
	cmd := &cobra.Command{
		Use:   "triage FILE...",
		Short: "Find crashes, lockdep reports, hangs and ext4 errors in console or dmesg text (- for stdin)",
		Long: `triage reads kernel console or dmesg text (timestamps, PRINTK_CALLER tags,
syslog prefixes and CR/LF noise allowed; a log pasted from elsewhere works) and
prints each finding: kind, normalized title, line, run phase, and for lockdep
reports the locks and the dependency chain. Exit status 1 when a severe
finding is present, so it can gate a script.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var files []triagedFile
			severe := 0
			for _, name := range args {
				data, err := readInput(cmd.Context(), name, cmd.InOrStdin())
				if err != nil {
					return err
				}
				f := triagedFile{File: name, Findings: triage.Parse(data)}
				if vmlinux != "" {
					if err := symbolizeAll(cmd.Context(), vmlinux, f.Findings); err != nil {
						return err
					}
				}
				for _, x := range f.Findings {
					if x.Severe() {
						severe++
					}
				}
				files = append(files, f)
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(files); err != nil {
					return err
				}
			} else {
				for _, f := range files {
					printFindings(out, f, full)
				}
			}
			if severe > 0 {
				return &exitError{1, fmt.Errorf("%d severe finding(s)", severe)}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the findings as JSON")
	cmd.Flags().BoolVar(&full, "report", false, "print each finding's whole report text")
	cmd.Flags().StringVar(&vmlinux, "vmlinux", "", "the kernel's vmlinux with debug info: add file:line to stack frames")
	return cmd
}

// triageCap bounds a console or log given to triage: far more than any
// capture patchbay writes, far less than memory.
const triageCap = 256 * safefile.MiB

func readInput(ctx context.Context, name string, stdin io.Reader) ([]byte, error) {
	if name == "-" {
		// A pipe can block forever: read aside so Ctrl-C/SIGTERM (which
		// cancel ctx) still end the command.
		type result struct {
			data []byte
			err  error
		}
		done := make(chan result, 1)
		go func() {
			data, err := safefile.ReadAll(stdin, "triage: stdin", triageCap)
			done <- result{data, err}
		}()
		select {
		case r := <-done:
			return r.data, r.err
		case <-ctx.Done():
			return nil, fmt.Errorf("triage: stdin: %w", context.Cause(ctx))
		}
	}
	data, err := safefile.ReadFile(name, triageCap)
	if err != nil {
		return nil, fmt.Errorf("triage: %w", err)
	}
	return data, nil
}

func printFindings(w io.Writer, f triagedFile, full bool) {
	if len(f.Findings) == 0 {
		fmt.Fprintf(w, "%s: no findings\n", f.File)
		return
	}
	for _, x := range f.Findings {
		sev := ""
		if !x.Severe() {
			sev = " (not severe)"
		}
		fmt.Fprintf(w, "%s:%d: [%s] %s%s, phase %s\n", f.File, x.Line, x.Kind, x.Title, sev, x.Phase)
		if l := x.Lockdep; l != nil {
			fmt.Fprintf(w, "    lockdep: %s", l.Header)
			if l.Task != "" {
				fmt.Fprintf(w, " (task %s)", l.Task)
			}
			fmt.Fprintln(w)
			for _, lc := range l.Locks {
				fmt.Fprintf(w, "    lock %-30s %-10s at %s\n", lc.Name, lc.Role, lc.At)
			}
			for _, c := range l.Chain {
				fmt.Fprintf(w, "    -> #%d %-27s taken at %s\n", c.Depth, c.Name, c.At)
			}
		}
		for _, n := range x.Notes {
			fmt.Fprintf(w, "    note: %s\n", n)
		}
		if full {
			fmt.Fprintf(w, "%s\n\n", x.Report)
		}
	}
}

func symbolizeAll(ctx context.Context, vmlinux string, findings []triage.Finding) error {
	s, err := symbolize.New(vmlinux)
	if err != nil {
		return err
	}
	for i := range findings {
		out, err := s.Report(ctx, findings[i].Report)
		if err != nil {
			return err
		}
		findings[i].Report = out
	}
	return nil
}
