package report

import (
	"bytes"
	_ "embed"
	"fmt"
	"html/template"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"patchbay/record"
)

//go:embed html.tmpl
var htmlSource string

// htmlTemplate is parsed once and only read afterwards.
var htmlTemplate = template.Must(template.New("report.html").Parse(htmlSource))

// runFiles are the files a run directory holds, in the order the report
// links them; all of them when the directory cannot be listed.
func runFiles() []string {
	return []string{"console.log", "dmesg.txt", "workload.json", "verify.json", "fsck.txt", "findings.json", "qemu.log", "run.json"}
}

type htmlPage struct {
	NoBaseline            string // the baseline did not run in this session
	Case, Question, Setup string
	Started, Seconds      string
	AccelNote, Image      string
	Variants              []htmlVariant
	Rows                  []htmlRow
	Legend                []record.Outcome
	Rates                 template.HTML // failure rates with intervals (svg.go)
	Decide                *htmlDecide
}

type htmlDecide struct {
	Rule, Params, Ended string
	Items               []htmlDecision
}

type htmlDecision struct {
	Name, Decision, Reason string
	Plot                   template.HTML
}

type htmlVariant struct {
	Heading, Description string
	Runs                 int
	Rate, P, BarLabel    string
	Bar                  []htmlSegment
	BuildError           string
	RunList              []htmlRun
	NewEveryRun          []string
	Detection            string
}

type htmlSegment struct {
	Outcome record.Outcome
	Count   int
	Pct     string
}

type htmlRow struct {
	Name  string
	Cells []htmlCell
}

type htmlCell struct {
	Text  string
	Lines []htmlLine // set for the findings row
}

type htmlLine struct {
	Text string
	New  bool
}

type htmlRun struct {
	Anchor, Label, Detail string
	Outcome               record.Outcome
	Reasons               []string
	Findings              []htmlFinding
	Links                 []htmlLink
	Timeline              template.HTML
	FindingNote           string
}

type htmlFinding struct {
	Title, Kind, Report string
	Line                int
	New                 bool
}

type htmlLink struct{ Name, Href string }

// HTML renders report.html: self-contained (inline CSS, no scripts, no
// external URLs), every value escaped by html/template. dir is the results
// directory; when a run's directory can be listed there, its actual files
// are linked, else the usual names.
func HTML(s *record.Summary, dir string) ([]byte, error) {
	stats := s.Stats()
	page := htmlPage{
		Case: s.Case, Question: oneLine(s.Question), Setup: setupLine(s), NoBaseline: missingBaseline(s),
		Seconds: fmt.Sprintf("%.0f s in all", s.Seconds), AccelNote: s.AccelNote, Image: s.Image,
		Legend: record.Outcomes,
	}
	if !s.Started.IsZero() {
		page.Started = s.Started.UTC().Format("2006-01-02 15:04:05 UTC")
	}
	for i := range s.Variants {
		page.Variants = append(page.Variants, htmlVariantOf(s, &s.Variants[i], &stats[i], dir))
	}
	page.Rates = ratesSVG(s, stats)
	if d := s.Decide; d != nil {
		hd := &htmlDecide{Rule: d.Rule, Params: decideParams(d), Ended: fmt.Sprintf("%d rounds; scheduling ended: %s", d.Rounds, d.Ended)}
		for i := range d.Variants {
			v := &d.Variants[i]
			hd.Items = append(hd.Items, htmlDecision{Name: v.Name, Decision: string(v.Decision), Reason: v.Reason, Plot: decisionSVG(d, v)})
		}
		page.Decide = hd
	}
	for _, r := range tableRows(s) {
		hr := htmlRow{Name: r.name}
		for i := range s.Variants {
			v, st := &s.Variants[i], &stats[i]
			if r.name == findingsRow && len(st.Titles) > 0 {
				hr.Cells = append(hr.Cells, htmlCell{Lines: findingCellLines(v, st)})
				continue
			}
			hr.Cells = append(hr.Cells, htmlCell{Text: r.cell(v, st)})
		}
		page.Rows = append(page.Rows, hr)
	}
	var b bytes.Buffer
	if err := htmlTemplate.Execute(&b, page); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func htmlVariantOf(s *record.Summary, v *record.VariantSummary, st *record.VariantStats, dir string) htmlVariant {
	hv := htmlVariant{
		Heading: variantHeading(s, v), Description: v.Description, Runs: len(v.Runs),
		Rate: rateCell(st), BuildError: v.BuildError,
		NewEveryRun: st.NewEveryRun, Detection: detectionCell(st),
	}
	if st.Compared {
		hv.P = pCell(st) + " vs " + s.Baseline
	}
	var label []string
	for _, o := range record.Outcomes {
		if n := st.Counts[o]; n > 0 {
			hv.Bar = append(hv.Bar, htmlSegment{Outcome: o, Count: n, Pct: strconv.FormatFloat(100*float64(n)/float64(len(v.Runs)), 'f', 2, 64)})
			label = append(label, fmt.Sprintf("%s %d", o, n))
		}
	}
	hv.BarLabel = strings.Join(label, ", ")
	fresh := newSet(st)
	for _, r := range v.Runs {
		hr := htmlRun{
			Anchor:  fmt.Sprintf("%s-%d", v.Name, r.Index),
			Label:   fmt.Sprintf("#%d seed %d", r.Index, r.Seed),
			Detail:  runDetail(r),
			Outcome: r.Outcome,
			Reasons: r.Reasons,
			Links:   runLinks(dir, r.Dir),

			Timeline:    timelineSVG(r),
			FindingNote: findingNote(r),
		}
		for _, f := range r.Findings {
			hr.Findings = append(hr.Findings, htmlFinding{Title: f.Title, Kind: string(f.Kind), Report: f.Report, Line: f.Line, New: fresh[f.Title]})
		}
		hv.RunList = append(hv.RunList, hr)
	}
	return hv
}

func runDetail(r *record.RunRecord) string {
	parts := []string{fmt.Sprintf("%.1f s", r.Seconds)}
	if r.BootSecs > 0 {
		parts = append(parts, fmt.Sprintf("boot %.1f s", r.BootSecs))
	}
	if len(r.Defrag) > 0 {
		parts = append(parts, fmt.Sprintf("%d moves, %d transitions", r.Moved(), r.Transitions()))
	}
	if len(r.Verify) > 0 {
		parts = append(parts, fmt.Sprintf("%d bad blocks (worst verify pass)", r.BadBlocks()))
	}
	if r.ConsoleTruncated {
		parts = append(parts, "console truncated at its size cap")
	}
	return strings.Join(parts, ", ")
}

func findingCellLines(v *record.VariantSummary, st *record.VariantStats) []htmlLine {
	fresh := newSet(st)
	var lines []htmlLine
	for _, t := range st.Titles {
		lines = append(lines, htmlLine{Text: fmt.Sprintf("%s (%d/%d runs)", t.Title, t.Runs, len(v.Runs)), New: fresh[t.Title]})
	}
	return lines
}

// runLinks links a run's files by paths relative to the results directory,
// so the report works wherever the directory is copied or served.
func runLinks(dir, runDir string) []htmlLink {
	names := runFiles()
	if dir != "" && runDir != "" {
		if listed, err := listRunDir(filepath.Join(dir, runDir)); err == nil {
			names = listed
		}
	}
	links := make([]htmlLink, 0, len(names))
	for _, n := range names {
		links = append(links, htmlLink{Name: n, Href: path.Join(filepath.ToSlash(runDir), n)})
	}
	return links
}

// listRunDir lists the regular files of a run directory: the usual ones
// first in their usual order, then the rest by name.
func listRunDir(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	rank := map[string]int{}
	for i, n := range runFiles() {
		rank[n] = i + 1
	}
	var names []string
	for _, e := range entries {
		if e.Type().IsRegular() && !strings.HasSuffix(e.Name(), ".tmp") {
			names = append(names, e.Name())
		}
	}
	sort.Slice(names, func(i, j int) bool {
		ri, rj := rank[names[i]], rank[names[j]]
		switch {
		case ri > 0 && rj > 0:
			return ri < rj
		case ri > 0 || rj > 0:
			return ri > 0
		}
		return names[i] < names[j]
	})
	return names, nil
}
