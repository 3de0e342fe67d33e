// Package report renders a results directory from a run summary: the
// machine-readable summary.json and summary.md, a side-by-side table ready
// to paste into a mail reply.
package report

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"patchbay/harness"
)

// Write renders every report into dir.
func Write(dir string, s *harness.Summary) error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if err := writeAtomic(filepath.Join(dir, "summary.json"), append(data, '\n')); err != nil {
		return err
	}
	return writeAtomic(filepath.Join(dir, "summary.md"), []byte(Markdown(s)))
}

// Markdown is the side-by-side summary: one column per variant.
func Markdown(s *harness.Summary) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# patchbay: %s\n\n", s.Case)
	if s.Question != "" {
		fmt.Fprintf(&b, "%s\n\n", oneLine(s.Question))
	}
	fmt.Fprintf(&b, "seed %d, %s, workload %s: %d files x %d blocks, %d mmap + %d pwrite writers, %d defrag worker(s)\n\n",
		s.Seed, s.Accel, s.Workload.Duration.D(), s.Workload.Files, s.Workload.Blocks,
		s.Workload.MmapWriters, s.Workload.PwriteWriters, s.Workload.Defrag.Workers)

	rows := []struct {
		name string
		cell func(v *harness.VariantSummary) string
	}{
		{"kernel", func(v *harness.VariantSummary) string {
			if v.Kernel == nil {
				return "build failed"
			}
			return fmt.Sprintf("%s (%s)", v.Kernel.Release, v.Kernel.Key[:8])
		}},
		{"patches", func(v *harness.VariantSummary) string { return fmt.Sprint(len(v.Patches)) }},
		{"runs", func(v *harness.VariantSummary) string { return fmt.Sprint(len(v.Runs)) }},
		{"outcome", outcomeCell},
		{"moves done", sumCell(func(r *harness.RunRecord) int64 { return r.Moved() })},
		{"refused EOPNOTSUPP", sumCell(func(r *harness.RunRecord) int64 { return r.Refused("EOPNOTSUPP") })},
		{"other move errors", sumCell(otherErrors)},
		{"a_ops transitions", sumCell(func(r *harness.RunRecord) int64 { return r.Transitions() })},
		{"block writes", sumCell(func(r *harness.RunRecord) int64 { return r.Writes() })},
		{"bad blocks live/dropcache/remount", badCell},
		{"e2fsck", fsckCell},
		{"findings", findingsCell},
	}
	b.WriteString("| |")
	for _, v := range s.Variants {
		name := v.Name
		if name == s.Baseline {
			name += " (baseline)"
		}
		fmt.Fprintf(&b, " %s |", name)
	}
	b.WriteString("\n|---|")
	for range s.Variants {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, row := range rows {
		fmt.Fprintf(&b, "| %s |", row.name)
		for i := range s.Variants {
			fmt.Fprintf(&b, " %s |", escape(row.cell(&s.Variants[i])))
		}
		b.WriteString("\n")
	}
	b.WriteString("\n")
	for _, v := range s.Variants {
		if v.BuildError != "" {
			fmt.Fprintf(&b, "**%s** did not build:\n\n```\n%s\n```\n\n", v.Name, v.BuildError)
		}
		for _, r := range v.Runs {
			if r.Outcome != harness.Pass && len(r.Reasons) > 0 {
				fmt.Fprintf(&b, "- %s #%d (seed %d) %s: %s ([logs](%s/))\n", v.Name, r.Index, r.Seed, r.Outcome, strings.Join(r.Reasons, "; "), r.Dir)
			}
		}
	}
	return b.String()
}

func outcomeCell(v *harness.VariantSummary) string {
	counts := v.Counts()
	var parts []string
	for _, o := range harness.Outcomes {
		if counts[o] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", o, counts[o]))
		}
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ", ")
}

func sumCell(f func(*harness.RunRecord) int64) func(*harness.VariantSummary) string {
	return func(v *harness.VariantSummary) string {
		if len(v.Runs) == 0 {
			return "-"
		}
		var n int64
		for _, r := range v.Runs {
			n += f(r)
		}
		return fmt.Sprint(n)
	}
}

func otherErrors(r *harness.RunRecord) int64 {
	var n int64
	for _, d := range r.Defrag {
		for k, c := range d.Results {
			if k != "moved" && k != "EOPNOTSUPP" {
				n += c
			}
		}
	}
	return n
}

func badCell(v *harness.VariantSummary) string {
	if len(v.Runs) == 0 {
		return "-"
	}
	per := map[string]int64{}
	for _, r := range v.Runs {
		for _, p := range r.Verify {
			per[p.Phase] += p.BadTotal
		}
	}
	return fmt.Sprintf("%d/%d/%d", per["live"], per["dropcache"], per["remount"])
}

func fsckCell(v *harness.VariantSummary) string {
	clean, dirty, none := 0, 0, 0
	for _, r := range v.Runs {
		switch {
		case r.Fsck == nil:
			none++
		case r.Fsck.Clean:
			clean++
		default:
			dirty++
		}
	}
	var parts []string
	if clean > 0 {
		parts = append(parts, fmt.Sprintf("clean %d", clean))
	}
	if dirty > 0 {
		parts = append(parts, fmt.Sprintf("ERRORS %d", dirty))
	}
	if none > 0 {
		parts = append(parts, fmt.Sprintf("not run %d", none))
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ", ")
}

// findingsCell lists distinct titles with the number of runs they were in.
func findingsCell(v *harness.VariantSummary) string {
	runs := map[string]int{}
	for _, r := range v.Runs {
		seen := map[string]bool{}
		for _, f := range r.Findings {
			if !seen[f.Title] {
				seen[f.Title] = true
				runs[f.Title]++
			}
		}
	}
	if len(runs) == 0 {
		return "none"
	}
	titles := make([]string, 0, len(runs))
	for t := range runs {
		titles = append(titles, t)
	}
	sort.Strings(titles)
	for i, t := range titles {
		titles[i] = fmt.Sprintf("%s (%d/%d runs)", t, runs[t], len(v.Runs))
	}
	return strings.Join(titles, "<br>")
}

func escape(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func writeAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return os.Rename(tmp, path)
}
