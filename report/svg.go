package report

import (
	"fmt"
	"html"
	"html/template"
	"math"
	"sort"
	"strings"

	"patchbay/record"
)

// The pictures of report.html: inline SVG built here from numbers, text
// escaped, no scripts and no external references.

// svgText escapes s for SVG text content and attributes.
func svgText(s string) string { return html.EscapeString(s) }

// ratesSVG draws each variant's failure rate with its 95% Wilson interval
// on one 0-100% axis, the baseline's interval shaded behind the others.
func ratesSVG(s *record.Summary, stats []record.VariantStats) template.HTML {
	const (
		left, width = 190, 420
		rowH, top   = 26, 24
	)
	h := top + rowH*len(stats) + 26
	x := func(p float64) float64 { return left + p*width }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="plot" width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-label="failure rate with 95%% interval per variant">`, left+width+90, h, left+width+90, h)
	fmt.Fprintf(&b, `<text x="%d" y="14" font-size="12" fill="#656d76">failure rate per variant, 95%% Wilson interval</text>`, left)
	for _, st := range stats {
		if st.Baseline && st.Judged > 0 {
			fmt.Fprintf(&b, `<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="#ddf4ff"/>`, x(st.Lo), top, math.Max(x(st.Hi)-x(st.Lo), 1), rowH*len(stats))
		}
	}
	for t := 0; t <= 10; t += 2 {
		xx := x(float64(t) / 10)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#d0d7de"/>`, xx, top, xx, top+rowH*len(stats))
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" font-size="11" text-anchor="middle" fill="#656d76">%d%%</text>`, xx, top+rowH*len(stats)+14, t*10)
	}
	for i, st := range stats {
		y := float64(top + rowH*i + rowH/2)
		name := st.Name
		if st.Baseline {
			name += " (baseline)"
		}
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" font-size="12" text-anchor="end" fill="#1f2328">%s</text>`, left-10, y+4, svgText(name))
		if st.Judged == 0 {
			fmt.Fprintf(&b, `<text x="%d" y="%.1f" font-size="11" fill="#656d76">no judged runs</text>`, left+4, y+4)
			continue
		}
		color := "#d4700a"
		if st.Baseline {
			color = "#0969da"
		}
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="3"/>`, x(st.Lo), y, x(st.Hi), y, color)
		fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="5" fill="%s"/>`, x(st.FailureRate), y, color)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" font-size="11" fill="#1f2328">%d/%d</text>`, left+width+8, y+4, st.Failures, st.Judged)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// decisionSVG draws the sequential rule's boundaries in the plane of
// discordant rounds (x) and rounds that failed only in the variant (y),
// with the path the variant's rounds took.
func decisionSVG(d *record.DecideRecord, v *record.VariantDecision) template.HTML {
	D := d.Design.MaxDiscordant
	const (
		left, top, size = 40, 20, 240
	)
	step := float64(size) / float64(max(D, 1))
	x := func(n int) float64 { return left + float64(n)*step }
	y := func(n int) float64 { return top + size - float64(n)*step }
	var b strings.Builder
	W, H := left+size+170, top+size+int(step/2)+34
	fmt.Fprintf(&b, `<svg class="plot" width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-label="%s: sequential decision path">`, W, H, W, H, svgText(v.Name))
	// Grid and the line of equal counts.
	for i := 0; i <= D; i++ {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#eaeef2"/>`, x(i), top, x(i), top+size)
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#eaeef2"/>`, left, y(i), left+size, y(i))
	}
	fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#d0d7de" stroke-dasharray="3 3"/>`, x(0), y(0), x(D), y(D))
	// Boundaries: a cell at (n, v) on or beyond the boundary decides.
	for n := 1; n <= D && n < len(d.Bounds.Upper); n++ {
		if u := d.Bounds.Upper[n]; u <= n {
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#ffebe9"/>`, x(n)-step/2, y(n)-step/2, step, float64(n-u+1)*step)
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#cf222e" stroke-width="2"/>`, x(n)-step/2, y(u)+step/2, x(n)+step/2, y(u)+step/2)
		}
		if l := d.Bounds.Lower[n]; l >= 0 {
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#dafbe1"/>`, x(n)-step/2, y(l)-step/2, step, float64(l+1)*step)
		}
	}
	for i := 0; i <= D; i++ { // labels over the boundary cells
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="10" text-anchor="middle" fill="#656d76">%d</text>`, x(i), top+size+step/2+10, i)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" font-size="10" text-anchor="end" fill="#656d76">%d</text>`, left-4-int(step/2), y(i)+3, i)
	}
	// The observed path, one point per look where the counts changed.
	pts := []string{fmt.Sprintf("%.1f,%.1f", x(0), y(0))}
	last := [2]int{}
	for _, lk := range v.Looks {
		if lk.Discordant == last[0] && lk.VariantOnly == last[1] {
			continue
		}
		last = [2]int{lk.Discordant, lk.VariantOnly}
		pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(lk.Discordant), y(lk.VariantOnly)))
	}
	fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="#1f2328" stroke-width="2"/>`, strings.Join(pts, " "))
	for _, p := range pts {
		var px, py float64
		fmt.Sscanf(p, "%f,%f", &px, &py)
		fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3.5" fill="#1f2328"/>`, px, py)
	}
	fmt.Fprintf(&b, `<text x="%d" y="%.1f" font-size="11" text-anchor="middle" fill="#656d76">discordant rounds (one of the two failed)</text>`, left+size/2, top+size+step/2+26)
	fmt.Fprintf(&b, `<text x="12" y="%d" font-size="11" fill="#656d76" transform="rotate(-90 12 %d)" text-anchor="middle">failed only in the variant</text>`, top+size/2, top+size/2)
	lx := left + size + 14
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="10" height="10" fill="#ffebe9" stroke="#cf222e"/><text x="%d" y="%d" font-size="11">differs: worse</text>`, lx, top+4, lx+14, top+13)
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="10" height="10" fill="#dafbe1"/><text x="%d" y="%d" font-size="11">differs: better</text>`, lx, top+22, lx+14, top+31)
	fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="12" font-weight="600">%s</text>`, lx, top+56, svgText(string(v.Decision)))
	fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="11" fill="#656d76">after %d rounds</text>`, lx, top+72, v.Rounds)
	fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="11" fill="#656d76">variant %d, baseline %d failed</text>`, lx, top+88, v.VariantFailures, v.BaselineFailures)
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// series is one line of a run's timeline: counts per second.
type series struct {
	name, color string
	counts      []int64
}

// runSeries sums the workers' per-second counts of each event, aligning
// workers by their start times (guest clock) on the earliest.
func runSeries(r *record.RunRecord) (map[string][]int64, bool) {
	var all []*record.PerSecond
	for _, w := range r.Writers {
		if w.PerSecond != nil {
			all = append(all, w.PerSecond)
		}
	}
	for _, d := range r.Defrag {
		if d.PerSecond != nil {
			all = append(all, d.PerSecond)
		}
	}
	if len(all) == 0 {
		return nil, false
	}
	t0 := all[0].StartUnix
	for _, p := range all {
		t0 = math.Min(t0, p.StartUnix)
	}
	out := map[string][]int64{}
	for _, p := range all {
		off := int(math.Round(p.StartUnix - t0))
		for name, c := range p.Counts {
			dst := out[name]
			for len(dst) < off+len(c) {
				dst = append(dst, 0)
			}
			for i, n := range c {
				dst[off+i] += n
			}
			out[name] = dst
		}
	}
	return out, true
}

// timelineSVG draws one run's workload second by second: block writes,
// moves (a_ops transitions) and refusals as lines, each scaled to its own
// peak (printed), bad read-backs as red marks, findings as a note.
func timelineSVG(r *record.RunRecord) template.HTML {
	counts, ok := runSeries(r)
	if !ok {
		return ""
	}
	lines := []series{
		{"writes/s", "#0969da", counts["writes"]},
		{"moves/s", "#1a7f37", counts["moved"]},
		{"a_ops transitions/s", "#8250df", counts["transitions"]},
		{"refusals/s", "#9a6700", counts["refused"]},
	}
	secs := 0
	for _, c := range counts {
		secs = max(secs, len(c))
	}
	if secs == 0 {
		return ""
	}
	const (
		left, width, stripH, gap, top = 120, 300, 22, 4, 4
	)
	var shown []series
	for _, s := range lines {
		if len(s.counts) > 0 {
			shown = append(shown, s)
		}
	}
	bad := counts["readback_bad"]
	rows := len(shown) + 1
	H := top + rows*(stripH+gap) + 16
	W := left + width + 60
	x := func(sec float64) float64 { return left + sec/float64(secs)*width }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="timeline" width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-label="run timeline">`, W, H, W, H)
	for i, s := range shown {
		y0 := float64(top + i*(stripH+gap))
		peak := int64(1)
		for _, n := range s.counts {
			peak = max(peak, n)
		}
		fmt.Fprintf(&b, `<rect x="%d" y="%.1f" width="%d" height="%d" fill="#f6f8fa"/>`, left, y0, width, stripH)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" font-size="10" text-anchor="end" fill="%s">%s</text>`, left-6, y0+stripH/2+3, s.color, svgText(s.name))
		pts := make([]string, 0, len(s.counts))
		for sec, n := range s.counts {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(float64(sec)+0.5), y0+stripH-float64(n)/float64(peak)*(stripH-2)))
		}
		fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="1.5"/>`, strings.Join(pts, " "), s.color)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" font-size="10" fill="#656d76">max %d</text>`, left+width+4, y0+stripH/2+3, peak)
	}
	y0 := float64(top + len(shown)*(stripH+gap))
	fmt.Fprintf(&b, `<rect x="%d" y="%.1f" width="%d" height="%d" fill="#f6f8fa"/>`, left, y0, width, stripH)
	fmt.Fprintf(&b, `<text x="%d" y="%.1f" font-size="10" text-anchor="end" fill="#cf222e">stale read-backs</text>`, left-6, y0+stripH/2+3)
	total := int64(0)
	for sec, n := range bad {
		if n > 0 {
			total += n
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="3" height="%d" fill="#cf222e"><title>%d at %d s</title></rect>`, x(float64(sec)+0.5)-1.5, y0+2, stripH-4, n, sec)
		}
	}
	fmt.Fprintf(&b, `<text x="%d" y="%.1f" font-size="10" fill="#656d76">%d</text>`, left+width+4, y0+stripH/2+3, total)
	for t := 0; t <= secs; t += max(secs/5, 1) {
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" font-size="10" text-anchor="middle" fill="#656d76">%d s</text>`, x(float64(t)), H-3, t)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// findingNote says which findings a run's console showed, by phase: the
// console carries no workload clock, so they are not placed on the axis.
func findingNote(r *record.RunRecord) string {
	if len(r.Findings) == 0 {
		return ""
	}
	by := map[string]int{}
	for _, f := range r.Findings {
		by[f.Phase]++
	}
	var parts []string
	for p, n := range by {
		parts = append(parts, fmt.Sprintf("%d in %s", n, p))
	}
	sort.Strings(parts)
	return "findings: " + strings.Join(parts, ", ")
}

// decideParams is the rule's parameters in one line.
func decideParams(d *record.DecideRecord) string {
	g := d.Design
	s := fmt.Sprintf("alpha %.2g two-sided (%.2g on worse, %.2g on better), D = %d discordant rounds, spending alpha*t^%g; equivalence: |difference| < %.2f at %.2g",
		g.AlphaWorse+g.AlphaBetter, g.AlphaWorse, g.AlphaBetter, g.MaxDiscordant, g.Rho, g.Margin, g.EquivAlpha)
	if d.BudgetRuns > 0 {
		s += fmt.Sprintf("; budget %d runs", d.BudgetRuns)
	}
	if d.BudgetSeconds > 0 {
		s += fmt.Sprintf("; budget %.0f min", d.BudgetSeconds/60)
	}
	return s
}

// detectionCell is the chance one run detects a failure, and failures per
// minute of run time.
func detectionCell(st *record.VariantStats) string {
	if st.Judged == 0 {
		return ""
	}
	return fmt.Sprintf("%.0f%% per run, %.2f failures per run-minute", 100*st.FailureRate, st.FailuresPerMinute)
}
