package report

import (
	"strings"
	"testing"

	"patchbay/record"
)

// A run that crashed before its workload reported has no defrag or writer
// numbers: the cells say unknown, not 0.
func TestUnreportedNumbersAreUnknownNotZero(t *testing.T) {
	s := &record.Summary{Case: "c", Baseline: "base", Variants: []record.VariantSummary{
		{Name: "base", Runs: []*record.RunRecord{{Variant: "base", Outcome: record.Crash, Dir: "base/0"}}},
		{Name: "fix", Runs: []*record.RunRecord{
			{Variant: "fix", Outcome: record.Pass, Dir: "fix/0",
				Defrag:  []record.DefragResult{{Results: map[string]int64{"moved": 5}}},
				Writers: []record.WriterResult{{Writes: 100}},
				Verify:  []record.VerifyResult{{Phase: "live"}, {Phase: "dropcache"}, {Phase: "remount"}}},
			{Variant: "fix", Index: 1, Outcome: record.Crash, Dir: "fix/1"},
		}},
	}}
	md := Markdown(s)
	for _, want := range []string{
		"| moves done | — | 5 (1 of 2 runs unknown) |",
		"| block writes | — | 100 (1 of 2 runs unknown) |",
		"| bad blocks live/dropcache/remount | —/—/— | 0/0/0 |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("summary.md lacks %q:\n%s", want, md)
		}
	}
}

// The per-run detail counts bad blocks once, not once per verify pass.
func TestRunDetailBadBlocksNotSummedOverPasses(t *testing.T) {
	r := &record.RunRecord{Verify: []record.VerifyResult{{Phase: "live", BadTotal: 468}, {Phase: "dropcache", BadTotal: 468}, {Phase: "remount", BadTotal: 0}}}
	d := runDetail(r)
	if !strings.Contains(d, "468 bad blocks") || strings.Contains(d, "936") {
		t.Errorf("detail %q: want 468 bad blocks (the worst pass), not the sum", d)
	}
}

// A console capture that hit its cap is a fact of the report.
func TestConsoleTruncatedIsReported(t *testing.T) {
	s := &record.Summary{Case: "c", Baseline: "base", Variants: []record.VariantSummary{
		{Name: "base", Runs: []*record.RunRecord{
			{Variant: "base", Outcome: record.Pass, Dir: "base/0"},
			{Variant: "base", Index: 1, Outcome: record.Crash, Dir: "base/1", ConsoleTruncated: true},
		}},
	}}
	md := Markdown(s)
	for _, want := range []string{
		"| console capture truncated at its size cap | #1: findings after the cap are unknown |",
		"- base #1: console capture hit its size cap",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("summary.md lacks %q:\n%s", want, md)
		}
	}
	html, err := HTML(s, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<th>console capture truncated at its size cap</th>", "console truncated at its size cap"} {
		if !strings.Contains(string(html), want) {
			t.Errorf("report.html lacks %q", want)
		}
	}
	// Without the field, no such row.
	s.Variants[0].Runs[1].ConsoleTruncated = false
	if md := Markdown(s); strings.Contains(md, "truncated") {
		t.Errorf("truncation reported for complete consoles:\n%s", md)
	}
}
