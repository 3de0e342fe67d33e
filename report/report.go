// Package report renders a results directory from a run summary:
// summary.json (the summary plus per-variant statistics; see SCHEMA.md),
// summary.md (a side-by-side table ready to paste into a mail reply),
// report.html (the same table, outcome bars, findings and links to every
// run's logs), junit.xml (for CI test views) and kcidb.json (KernelCI's
// KCIDB v4 I/O format). It reads run records only and knows nothing of QEMU.
package report

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"patchbay/casespec"
	"patchbay/record"
	"patchbay/safefile"
)

// Write renders every report into dir, each file atomically.
func Write(dir string, s *record.Summary) error { return write(dir, s, true) }

// WriteViews renders every report but summary.json into dir: the files
// made from summary.json, which stays as it is (a newer patchbay's fields
// that this one does not know survive a re-render).
func WriteViews(dir string, s *record.Summary) error { return write(dir, s, false) }

func write(dir string, s *record.Summary, withSummary bool) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("results directory: %w", err)
	}
	files := []struct {
		name   string
		render func() ([]byte, error)
	}{
		// summary.json first: the other files can be made again from it.
		{"summary.json", func() ([]byte, error) { return SummaryJSON(s) }},
		{"summary.md", func() ([]byte, error) { return []byte(Markdown(s)), nil }},
		{"junit.xml", func() ([]byte, error) { return JUnit(s, dir) }},
		{"kcidb.json", func() ([]byte, error) { return KCIDB(s) }},
		{"report.html", func() ([]byte, error) { return HTML(s, dir) }},
	}
	if !withSummary {
		files = files[1:]
	}
	for _, f := range files {
		data, err := f.render()
		if err != nil {
			return fmt.Errorf("rendering %s: %w", f.name, err)
		}
		if err := writeAtomic(filepath.Join(dir, f.name), data); err != nil {
			return err
		}
	}
	return nil
}

// row is one line of the side-by-side table, shared by Markdown and HTML.
type row struct {
	name string
	cell func(v *record.VariantSummary, st *record.VariantStats) string
}

// findingsRow is the name of the row that HTML renders as a list.
const findingsRow = "findings"

func tableRows(s *record.Summary) []row {
	// Defrag and writer numbers exist only for runs whose workload
	// reported them (not for a run that crashed before it did).
	defragged := func(r *record.RunRecord) bool { return len(r.Defrag) > 0 }
	wrote := func(r *record.RunRecord) bool { return len(r.Writers) > 0 }
	sum := func(has func(*record.RunRecord) bool, f func(*record.RunRecord) int64) func(*record.VariantSummary, *record.VariantStats) string {
		return func(v *record.VariantSummary, _ *record.VariantStats) string { return sumCell(v, has, f) }
	}
	only := func(f func(*record.VariantSummary) string) func(*record.VariantSummary, *record.VariantStats) string {
		return func(v *record.VariantSummary, _ *record.VariantStats) string { return f(v) }
	}
	rows := []row{
		{"kernel", only(kernelCell)},
		{"patches", only(func(v *record.VariantSummary) string { return fmt.Sprint(len(patchStack(v))) })},
		{"runs", only(func(v *record.VariantSummary) string { return fmt.Sprint(len(v.Runs)) })},
		{"outcome", only(outcomeCell)},
		{"failure rate (95% CI)", func(_ *record.VariantSummary, st *record.VariantStats) string { return rateCell(st) }},
		{"p vs baseline (Fisher)", func(_ *record.VariantSummary, st *record.VariantStats) string { return pCell(st) }},
		{"moves done", sum(defragged, func(r *record.RunRecord) int64 { return r.Moved() })},
		{"refused EOPNOTSUPP", sum(defragged, func(r *record.RunRecord) int64 { return r.Refused("EOPNOTSUPP") })},
		{"other move errors", sum(defragged, otherErrors)},
		{"a_ops transitions", sum(defragged, func(r *record.RunRecord) int64 { return r.Transitions() })},
		{"block writes", sum(wrote, func(r *record.RunRecord) int64 { return r.Writes() })},
		{"read-backs missing the last write", sum(wrote, func(r *record.RunRecord) int64 { return r.ReadbackBad() })},
		{"bad blocks live/dropcache/remount", only(badCell)},
		{"e2fsck", only(fsckCell)},
		{findingsRow, func(v *record.VariantSummary, st *record.VariantStats) string {
			return strings.Join(findingLines(v, st), "<br>")
		}},
	}
	if len(s.NotFinished) > 0 {
		rows = slices.Insert(rows, 3, row{"not finished", func(v *record.VariantSummary, _ *record.VariantStats) string {
			return notFinishedCell(s, v)
		}})
	}
	if consoleTruncated(s) {
		rows = append(rows, row{"console capture truncated at its size cap", only(truncatedCell)})
	}
	// Rates come before the verdict rows: how hard each run pushed.
	rates := []row{
		{"writes/s per writer (faults/s)", only(writerRateCell)},
		{"moves/s per defrag worker", only(moveRateCell)},
	}
	at := slices.IndexFunc(rows, func(r row) bool { return r.name == "bad blocks live/dropcache/remount" })
	rows = slices.Insert(rows, at, rates...)
	if s.Workload.Defrag.Tool == casespec.DefragE4defrag {
		rows = slices.Insert(rows, at, row{"e4defrag outcomes (as it printed them)", only(e4defragCell)})
	}
	if s.Workload.PowerCut != nil {
		// What a power cut run checks instead of the three live passes.
		pc := row{"power cut: acknowledged syncs; bad blocks after replay (misplaced); journal recovered", only(powerCutCell)}
		at := slices.IndexFunc(rows, func(r row) bool { return r.name == "e2fsck" })
		rows = slices.Insert(rows, at, pc)
	}
	if tracedIomap(s) {
		// With buffered iomap a file swaps its a_ops at its first move and
		// stays on buffer heads while open: files moved count the swaps
		// (the transitions row counts journal-flag swaps only).
		at := slices.IndexFunc(rows, func(r row) bool { return r.name == "a_ops transitions" })
		rows = slices.Insert(rows, at+1, row{"work files moved (each an a_ops swap off iomap)",
			sum(defragged, func(r *record.RunRecord) int64 { return r.FilesMoved() })})
		// Evidence that the runs used the buffered iomap path at all.
		iomap := row{"buffered iomap events setup/workload; folios above order 0", only(iomapCell)}
		rows = append(rows[:len(rows)-1], iomap, rows[len(rows)-1])
	}
	return rows
}

// writerRateCell is the mean writes/s (and faults/s of the writing thread)
// per writer of each mode over the variant's runs.
func writerRateCell(v *record.VariantSummary) string {
	type acc struct {
		writes, faults float64
		n              int
	}
	by := map[string]*acc{}
	for _, r := range v.Runs {
		for _, w := range r.Writers {
			a := by[w.Mode]
			if a == nil {
				a = &acc{}
				by[w.Mode] = a
			}
			a.writes, a.faults, a.n = a.writes+w.WritesPerS, a.faults+w.FaultsPerS, a.n+1
		}
	}
	if len(by) == 0 {
		return "-"
	}
	modes := make([]string, 0, len(by))
	for m := range by {
		modes = append(modes, m)
	}
	sort.Strings(modes)
	var parts []string
	for _, m := range modes {
		a := by[m]
		parts = append(parts, fmt.Sprintf("%s %.0f (%.0f)", m, a.writes/float64(a.n), a.faults/float64(a.n)))
	}
	return strings.Join(parts, ", ")
}

// moveRateCell is the mean successful moves/s per ioctl defrag worker.
func moveRateCell(v *record.VariantSummary) string {
	var sum float64
	n := 0
	for _, r := range v.Runs {
		for _, d := range r.Defrag {
			if d.Tool != casespec.DefragE4defrag {
				sum, n = sum+d.MovesPerS, n+1
			}
		}
	}
	if n == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f", sum/float64(n))
}

// e4defragCell sums the outcome classes e4defrag printed.
func e4defragCell(v *record.VariantSummary) string {
	sum := map[string]int64{}
	for _, r := range v.Runs {
		for _, d := range r.Defrag {
			if d.Tool == casespec.DefragE4defrag {
				for k, c := range d.Results {
					if c > 0 {
						sum[k] += c
					}
				}
			}
		}
	}
	if len(sum) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(sum))
	for k := range sum {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, sum[k]))
	}
	return strings.Join(parts, ", ")
}

// tracedIomap: some run counted buffered-iomap events (check_buffered_iomap).
func tracedIomap(s *record.Summary) bool {
	for _, v := range s.Variants {
		for _, r := range v.Runs {
			if r.BufferedIomap != nil {
				return true
			}
		}
	}
	return false
}

func iomapCell(v *record.VariantSummary) string {
	var setup, work, folios, large int64
	traced, order0 := 0, 0
	for _, r := range v.Runs {
		if a := r.BufferedIomap; a != nil {
			setup, work, traced = setup+a.Setup, work+a.Workload, traced+1
			folios, large = folios+a.Folios, large+a.LargeFolios
			if a.OnlyOrderZero() {
				order0++
			}
		}
	}
	if traced == 0 {
		return "-"
	}
	cell := fmt.Sprintf("%d / %d; %d of %d", setup, work, large, folios)
	if order0 > 0 {
		// Every report, not only the live log: these runs did not test large folios.
		cell += fmt.Sprintf(" (%d of %d runs only order-0 folios: large folios not exercised)", order0, traced)
	}
	return cell
}

// Markdown is the side-by-side summary: one column per variant.
func Markdown(s *record.Summary) string {
	stats := s.Stats()
	var b strings.Builder
	fmt.Fprintf(&b, "# patchbay: %s\n\n", s.Case)
	if s.Question != "" {
		fmt.Fprintf(&b, "%s\n\n", oneLine(s.Question))
	}
	fmt.Fprintf(&b, "%s\n\n", setupLine(s))
	if note := missingBaseline(s); note != "" {
		fmt.Fprintf(&b, "**%s**\n\n", note)
	}
	b.WriteString("| |")
	for _, v := range s.Variants {
		fmt.Fprintf(&b, " %s |", escape(variantHeading(s, &v)))
	}
	b.WriteString("\n|---|")
	for range s.Variants {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, row := range tableRows(s) {
		fmt.Fprintf(&b, "| %s |", row.name)
		for i := range s.Variants {
			fmt.Fprintf(&b, " %s |", escape(row.cell(&s.Variants[i], &stats[i])))
		}
		b.WriteString("\n")
	}
	b.WriteString("\n")
	b.WriteString(evidenceMarkdown(s, stats))
	for _, j := range s.NotFinished {
		fmt.Fprintf(&b, "- %s #%d (seed %d): not finished (the session ended before this run did)\n", j.Variant, j.Index, j.Seed)
	}
	for _, v := range s.Variants {
		for _, r := range v.Runs {
			if r.ConsoleTruncated {
				fmt.Fprintf(&b, "- %s #%d: console capture hit its size cap: console.log and the findings stop there\n", v.Name, r.Index)
			}
		}
		if v.BuildError != "" {
			fmt.Fprintf(&b, "**%s** did not build:\n\n```\n%s\n```\n\n", v.Name, v.BuildError)
		}
		for _, r := range v.Runs {
			if len(r.Reasons) > 0 { // a pass with a reason is a marked pass (order-0 folios only)
				fmt.Fprintf(&b, "- %s #%d (seed %d) %s: %s ([logs](%s/))\n", v.Name, r.Index, r.Seed, r.Outcome, strings.Join(r.Reasons, "; "), r.Dir)
			}
		}
	}
	return b.String()
}

func setupLine(s *record.Summary) string {
	if s.Workload.Kind == casespec.WorkloadFio {
		return fmt.Sprintf("seed %d, %s, workload %s: fio job %s, verified with %s", s.Seed, s.Accel, s.Workload.Duration.D(), s.Workload.Fio.Job, s.Workload.Fio.Verify)
	}
	w := s.Workload
	line := fmt.Sprintf("seed %d, %s, workload %s: %d files x %d blocks, %d mmap + %d pwrite writers, %d defrag worker(s)",
		s.Seed, s.Accel, w.Duration.D(), w.Files, w.Blocks, w.MmapWriters, w.PwriteWriters, w.Defrag.Workers)
	// The options that change what the workload does, when set.
	if w.Defrag.Tool == casespec.DefragE4defrag {
		line += " running e4defrag"
	}
	if w.Defrag.Donor != "" {
		line += ", " + w.Defrag.Donor + " donor"
	}
	if w.Defrag.EvictOneIn > 0 {
		line += fmt.Sprintf(", evicting before 1 in %d moves", w.Defrag.EvictOneIn)
	}
	if w.Epochs > 1 {
		line += fmt.Sprintf(", %d epochs", w.Epochs)
	}
	return line
}

func variantHeading(s *record.Summary, v *record.VariantSummary) string {
	if v.Name == s.Baseline {
		return v.Name + " (baseline)"
	}
	return v.Name
}

func kernelCell(v *record.VariantSummary) string {
	if v.Kernel == nil {
		if v.BuildError != "" {
			return "build failed"
		}
		return "-"
	}
	key := v.Kernel.Key
	if len(key) > 8 {
		key = key[:8]
	}
	return fmt.Sprintf("%s (%s)", v.Kernel.Release, key)
}

func outcomeCell(v *record.VariantSummary) string {
	counts := v.Counts()
	var parts []string
	for _, o := range record.Outcomes {
		if counts[o] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", o, counts[o]))
		}
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ", ")
}

// rateCell is "25% [5-70%]": failures over judged runs with the Wilson
// interval, so 0 of 3 reads as "not shown to be safe" rather than "safe".
func rateCell(st *record.VariantStats) string {
	if st.Judged == 0 {
		return "-"
	}
	pct := func(x float64) string { return strconv.FormatFloat(100*x, 'f', 0, 64) }
	return fmt.Sprintf("%s%% [%s-%s%%] (%d/%d)", pct(st.FailureRate), pct(st.Lo), pct(st.Hi), st.Failures, st.Judged)
}

func pCell(st *record.VariantStats) string {
	if !st.Compared {
		return "-"
	}
	return "p=" + strconv.FormatFloat(st.PValueVsBaseline, 'g', 2, 64)
}

// unknown is a cell whose number no run reported: not the same as 0.
const unknown = "—"

// sumCell sums f over the runs that reported it (has); runs that did not
// (a crash before the workload reported) are counted as unknown, not 0.
func sumCell(v *record.VariantSummary, has func(*record.RunRecord) bool, f func(*record.RunRecord) int64) string {
	if len(v.Runs) == 0 {
		return "-"
	}
	var n int64
	known := 0
	for _, r := range v.Runs {
		if has(r) {
			n += f(r)
			known++
		}
	}
	switch {
	case known == 0:
		return unknown
	case known < len(v.Runs):
		return fmt.Sprintf("%d (%d of %d runs unknown)", n, len(v.Runs)-known, len(v.Runs))
	}
	return fmt.Sprint(n)
}

// notFinishedCell names the variant's runs the session planned but never
// finished (it was killed): "#1 (seed 43), #2 (seed 44)".
func notFinishedCell(s *record.Summary, v *record.VariantSummary) string {
	var parts []string
	for _, j := range s.NotFinished {
		if j.Variant == v.Name {
			parts = append(parts, fmt.Sprintf("#%d (seed %d)", j.Index, j.Seed))
		}
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ", ")
}

func consoleTruncated(s *record.Summary) bool {
	for _, v := range s.Variants {
		for _, r := range v.Runs {
			if r.ConsoleTruncated {
				return true
			}
		}
	}
	return false
}

// truncatedCell lists the runs whose console.log stops at the capture cap.
func truncatedCell(v *record.VariantSummary) string {
	var parts []string
	for _, r := range v.Runs {
		if r.ConsoleTruncated {
			parts = append(parts, fmt.Sprintf("#%d", r.Index))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ") + ": findings after the cap are unknown"
}

func otherErrors(r *record.RunRecord) int64 {
	var n int64
	for _, d := range r.Defrag {
		if d.Tool == casespec.DefragE4defrag {
			continue // what the tool printed, in its own row
		}
		for k, c := range d.Results {
			if k != "moved" && k != "EOPNOTSUPP" {
				n += c
			}
		}
	}
	return n
}

// badCell is the bad blocks of each verify pass (live/dropcache/remount),
// summed over the runs that ran that pass; a pass no run reached is
// unknown, not 0.
func badCell(v *record.VariantSummary) string {
	if len(v.Runs) == 0 {
		return "-"
	}
	per := map[string]int64{}
	ran := map[string]bool{}
	for _, r := range v.Runs {
		for _, p := range r.Verify {
			per[p.Phase] += p.BadTotal
			ran[p.Phase] = true
		}
	}
	var parts []string
	for _, phase := range []string{"live", "dropcache", "remount"} {
		if ran[phase] {
			parts = append(parts, fmt.Sprint(per[phase]))
		} else {
			parts = append(parts, unknown)
		}
	}
	return strings.Join(parts, "/")
}

// missingBaseline says so when the case's baseline is not among the
// session's variants (e.g. --variant fallback alone): then nothing is
// compared, and the table must not look as if it had been.
func missingBaseline(s *record.Summary) string {
	if s.Baseline == "" {
		return ""
	}
	for _, v := range s.Variants {
		if v.Name == s.Baseline {
			return ""
		}
	}
	return fmt.Sprintf("The baseline %s was not run in this session: no variant is compared with it (no p-values, no titles new against it).", s.Baseline)
}

// patchStack is the variant's stack as built (one entry per patch applied:
// a series input or a base+replace variant expands to its mails), or the
// case's patches list when the variant has no kernel record.
func patchStack(v *record.VariantSummary) []string {
	if v.Kernel != nil && len(v.Kernel.Stack) > 0 {
		return v.Kernel.Stack
	}
	return v.Patches
}

// powerCutCell sums, over the variant's power-cut runs that reached the
// replay, the syncs acknowledged before the cut and the bad blocks of the
// replay pass (with those holding another block's data), and counts the
// runs whose mount replayed the journal.
func powerCutCell(v *record.VariantSummary) string {
	var runs, recovered int
	var acks, bad, misplaced int64
	for _, r := range v.Runs {
		if r.PowerCut == nil {
			continue
		}
		replayed := false
		for _, p := range r.Verify {
			if p.Phase == "replay" {
				replayed = true
				bad += p.BadTotal
				misplaced += p.Counts["misplaced"]
			}
		}
		if !replayed {
			continue
		}
		runs++
		acks += int64(r.PowerCut.AckRecords)
		if r.PowerCut.JournalRecovered {
			recovered++
		}
	}
	if runs == 0 {
		return unknown
	}
	return fmt.Sprintf("%d; %d (%d); %d of %d runs", acks, bad, misplaced, recovered, runs)
}

func fsckCell(v *record.VariantSummary) string {
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

// findingLines lists distinct titles, most frequent first, with the number
// of runs they were in; titles the baseline never showed are marked NEW.
func findingLines(v *record.VariantSummary, st *record.VariantStats) []string {
	if len(st.Titles) == 0 {
		return []string{"none"}
	}
	fresh := newSet(st)
	lines := make([]string, 0, len(st.Titles))
	for _, t := range st.Titles {
		line := fmt.Sprintf("%s (%d/%d runs)", t.Title, t.Runs, len(v.Runs))
		if fresh[t.Title] {
			line += " **NEW**"
		}
		lines = append(lines, line)
	}
	return lines
}

func newSet(st *record.VariantStats) map[string]bool {
	m := make(map[string]bool, len(st.NewVsBaseline))
	for _, t := range st.NewVsBaseline {
		m[t] = true
	}
	return m
}

func escape(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// writeAtomic writes through a temporary file in the same directory, an
// fsync and a rename (then an fsync of the directory), so a reader, or a
// crash, never sees half a report.
func writeAtomic(path string, data []byte) error {
	return safefile.WriteAtomic(path, data, 0o644)
}
