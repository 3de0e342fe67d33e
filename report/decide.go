package report

import (
	"fmt"
	"strings"

	"patchbay/record"
)

// evidenceMarkdown is what summary.md says beside the table: each variant's
// decision by the sequential rule with its evidence (a decide session), the
// titles new in every run of a variant, and detection per run and minute.
func evidenceMarkdown(s *record.Summary, stats []record.VariantStats) string {
	var b strings.Builder
	if d := s.Decide; d != nil {
		fmt.Fprintf(&b, "## Decision\n\n")
		for _, v := range d.Variants {
			fmt.Fprintf(&b, "- **%s vs %s: %s** after %d rounds (variant failed %d, baseline %d): %s\n",
				escape(v.Name), escape(s.Baseline), v.Decision, v.Rounds, v.VariantFailures, v.BaselineFailures, escape(v.Reason))
			var path []string
			for _, lk := range v.Looks {
				path = append(path, fmt.Sprintf("%d/%d≥%s", lk.VariantOnly, lk.Discordant, boundText(lk.Upper, lk.Discordant)))
			}
			if len(path) > 0 {
				fmt.Fprintf(&b, "  - looks (variant-only/discordant ≥ boundary, one per round): %s\n", strings.Join(path, " "))
			}
		}
		fmt.Fprintf(&b, "\nRule: %s. Parameters: %s. %d rounds; scheduling ended: %s.\n\n", d.Rule, decideParams(d), d.Rounds, d.Ended)
	}
	for _, st := range stats {
		for _, n := range st.NewEveryRun {
			fmt.Fprintf(&b, "- **%s**: %s\n", escape(st.Name), escape(n))
		}
	}
	var det []string
	for _, st := range stats {
		if c := detectionCell(&st); c != "" {
			det = append(det, fmt.Sprintf("%s %s", st.Name, c))
		}
	}
	if len(det) > 0 {
		fmt.Fprintf(&b, "\nDetection: %s.\n\n", escape(strings.Join(det, "; ")))
	}
	return b.String()
}

// boundText is the boundary at d, or "-" where none can be crossed.
func boundText(u, d int) string {
	if d == 0 || u > d {
		return "-"
	}
	return fmt.Sprint(u)
}
