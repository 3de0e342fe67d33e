package report

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"patchbay/casespec"
	"patchbay/harness"
	"patchbay/kernel"
	"patchbay/record"
	"patchbay/triage"
)

func sample() *record.Summary {
	mk := func(variant string, outcome record.Outcome, moved, refused, bad int64, findings ...triage.Finding) *record.RunRecord {
		return &record.RunRecord{
			Variant: variant, Outcome: outcome, Dir: variant + "/0", Seed: 7,
			Writers: []record.WriterResult{{ID: 0, Mode: "mmap", Writes: 100}},
			Defrag:  []record.DefragResult{{Results: map[string]int64{"moved": moved, "EOPNOTSUPP": refused, "EBUSY": 1}, Transitions: moved}},
			Verify: []record.VerifyResult{
				{Phase: "live"}, {Phase: "dropcache", BadTotal: bad}, {Phase: "remount", BadTotal: bad},
			},
			Fsck:     &record.FsckResult{Clean: bad == 0, Exit: map[bool]int{true: 0, false: 4}[bad == 0]},
			Findings: findings,
			Reasons:  map[bool][]string{true: nil, false: {"bad blocks = 4, expected at most 0"}}[outcome == record.Pass],
		}
	}
	warn := triage.Finding{Kind: "WARNING", Title: "WARNING in ext4_move_extents"}
	return &record.Summary{
		Case: "ext4-journal-defrag", Baseline: "eopnotsupp", Seed: 7, Accel: "tcg",
		Variants: []record.VariantSummary{
			{Name: "eopnotsupp", Kernel: &kernel.Artifact{Key: "183cbe68b9b24e6a", Release: "6.12.117"},
				Runs: []*record.RunRecord{mk("eopnotsupp", record.Pass, 0, 50, 0)}},
			{Name: "fallback", Patches: []string{"0001.patch"}, Kernel: &kernel.Artifact{Key: "e1634d79638a80bc", Release: "6.12.117"},
				Runs: []*record.RunRecord{mk("fallback", record.Fail, 29, 0, 2, warn), mk("fallback", record.Pass, 10, 0, 0)}},
		},
	}
}

func TestMarkdownSideBySide(t *testing.T) {
	md := Markdown(sample())
	for _, want := range []string{
		"| | eopnotsupp (baseline) | fallback |",
		"| outcome | pass 1 | pass 1, fail 1 |",
		"| moves done | 0 | 39 |",
		"| refused EOPNOTSUPP | 50 | 0 |",
		"| other move errors | 1 | 2 |",
		"| bad blocks live/dropcache/remount | 0/0/0 | 0/2/2 |",
		"| e2fsck | clean 1 | clean 1, ERRORS 1 |",
		"WARNING in ext4_move_extents (1/2 runs)",
		"- fallback #0 (seed 7) fail: bad blocks = 4",
		"| failure rate (95% CI) | 0% [0-79%] (0/1) | 50% [9-91%] (1/2) |",
		"| p vs baseline (Fisher) | - | p=1 |",
		"WARNING in ext4_move_extents (1/2 runs) **NEW**",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("summary.md lacks %q:\n%s", want, md)
		}
	}
}

func TestWriteIsCompleteJSON(t *testing.T) {
	dir := t.TempDir()
	if err := Write(dir, sample()); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "summary.json"))
	if err != nil {
		t.Fatal(err)
	}
	var back record.Summary
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Variants) != 2 || back.Variants[1].Runs[0].Moved() != 29 || back.Variants[1].Kernel.Key != "e1634d79638a80bc" {
		t.Errorf("summary.json did not round-trip: %+v", back.Variants)
	}
	for _, name := range []string{"summary.md", "report.html", "junit.xml", "kcidb.json"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Error(err)
		}
	}
	if leftovers, _ := filepath.Glob(filepath.Join(dir, "*.tmp")); len(leftovers) > 0 {
		t.Errorf("temporary files left: %v", leftovers)
	}
}

func TestMarkdownRich(t *testing.T) {
	md := Markdown(richSample())
	for _, want := range []string{
		"| | eopnotsupp (baseline) | fallback | broken |",
		"| kernel | 6.12.117 (183cbe68) | 6.12.117 (e1634d79) | build failed |",
		"| failure rate (95% CI) | 0% [0-56%] (0/3) | 80% [38-96%] (4/5) | - |",
		"| p vs baseline (Fisher) | - | p=0.14 | - |",
		hungTitle + " (1/7 runs) **NEW**",
		ext4Warn + " (1/3 runs) |",
		"**broken** did not build:",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("summary.md lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, ext4Warn+" (1/7 runs) **NEW**") {
		t.Error("a title seen in the baseline is marked NEW")
	}
}

func TestSummaryJSONCarriesStatsAndReadsBack(t *testing.T) {
	dir := t.TempDir()
	want := richSample()
	if err := Write(dir, want); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "summary.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Schema   int                   `json:"schema"`
		Case     string                `json:"case"`
		Variants []json.RawMessage     `json:"variants"`
		Stats    []record.VariantStats `json:"stats"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Schema != SchemaVersion || doc.Case != "ext4-journal-defrag" || len(doc.Variants) != 3 || len(doc.Stats) != 3 {
		t.Fatalf("summary.json top level: schema %d case %q variants %d stats %d", doc.Schema, doc.Case, len(doc.Variants), len(doc.Stats))
	}
	fb := doc.Stats[1]
	if fb.Name != "fallback" || fb.Judged != 5 || fb.Failures != 4 || fb.Counts[record.Crash] != 1 ||
		len(fb.NewVsBaseline) != 3 || fb.PValueVsBaseline <= 0 || fb.PValueVsBaseline >= 1 || !doc.Stats[0].Baseline {
		t.Errorf("fallback stats: %+v", fb)
	}

	back, err := Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	if back.Dir != dir || len(back.Variants) != 3 || len(back.Variants[1].Runs) != 7 ||
		back.Variants[1].Runs[0].Findings[0].Report != want.Variants[1].Runs[0].Findings[0].Report ||
		back.Workload.Duration != want.Workload.Duration || !back.Started.Equal(want.Started) {
		t.Errorf("Read did not round-trip: %+v", back)
	}
	// Rendering what was read gives the same files.
	for _, render := range []func(*record.Summary) ([]byte, error){
		SummaryJSON, KCIDB,
		func(s *record.Summary) ([]byte, error) { return JUnit(s, dir) },
		func(s *record.Summary) ([]byte, error) { return HTML(s, dir) },
		func(s *record.Summary) ([]byte, error) { return []byte(Markdown(s)), nil },
	} {
		a, err1 := render(want)
		b, err2 := render(back)
		if err1 != nil || err2 != nil || string(a) != string(b) {
			t.Errorf("re-rendering differs (%v, %v):\n%s\n---\n%s", err1, err2, a, b)
		}
	}
}

func TestReadRejectsNewerSchema(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "summary.json"), []byte(`{"schema": 99, "case": "x"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(dir); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Errorf("want a newer-schema error, got %v", err)
	}
}

// The results directory from the first real run (no stats, no schema field)
// must still render.
func TestReadRealResults(t *testing.T) {
	src := filepath.Join("..", "results", "ext4-journal-defrag", "20261128-103803")
	if _, err := os.Stat(filepath.Join(src, "summary.json")); err != nil {
		t.Skip("no real results directory in this checkout")
	}
	s, err := Read(src)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := Write(dir, s); err != nil {
		t.Fatal(err)
	}
	md := Markdown(s)
	if !strings.Contains(md, "| moves done | 0 | 29 |") || !strings.Contains(md, "| failure rate (95% CI) | 0% [0-79%] (0/1) | 0% [0-79%] (0/1) |") {
		t.Errorf("real summary renders as:\n%s", md)
	}
}

// The buffered-iomap row appears only for sessions that traced iomap, with
// per-variant sums of the setup and workload counts.
func TestIomapRow(t *testing.T) {
	s := sample()
	if md := Markdown(s); strings.Contains(md, "buffered iomap") {
		t.Errorf("untraced session shows an iomap row:\n%s", md)
	}
	s.Variants[1].Runs[0].BufferedIomap = &record.IomapActivity{Setup: 40, Workload: 1000, Folios: 300, LargeFolios: 20}
	s.Variants[1].Runs[1].BufferedIomap = &record.IomapActivity{Setup: 2, Workload: 5, Folios: 10}
	md := Markdown(s)
	if !strings.Contains(md, "| buffered iomap events setup/workload; folios above order 0 | - | 42 / 1005; 20 of 310 (1 of 2 runs only order-0 folios: large folios not exercised) |") {
		t.Errorf("iomap row missing or wrong:\n%s", md)
	}
	// Files moved are the a_ops swaps off iomap: a row of their own there.
	s.Variants[1].Runs[0].Defrag = []record.DefragResult{{FilesMoved: 12}}
	if md := Markdown(s); !strings.Contains(md, "| work files moved (each an a_ops swap off iomap) |") || !strings.Contains(md, "| 12") {
		t.Errorf("no files-moved row for an iomap session:\n%s", md)
	}
	// The verdict's mark on a pass reaches the report's run list.
	r := s.Variants[1].Runs[1]
	r.Outcome, r.Reasons = record.Pass, []string{harness.OrderZeroOnly}
	if md := Markdown(s); !strings.Contains(md, "pass: "+harness.OrderZeroOnly) {
		t.Errorf("marked pass not listed:\n%s", md)
	}
}

// Rates are per writer mode and per ioctl worker; e4defrag's printed
// outcomes get their own row and never count as move errors.
func TestRateAndE4defragRows(t *testing.T) {
	s := sample()
	s.Variants[1].Runs = s.Variants[1].Runs[:1]
	r := s.Variants[1].Runs[0]
	r.Writers = []record.WriterResult{{Mode: "mmap", WritesPerS: 1000, FaultsPerS: 900}, {Mode: "mmap", WritesPerS: 1200, FaultsPerS: 1100}, {Mode: "pwrite", WritesPerS: 3500}}
	r.Defrag[0].MovesPerS = 40
	md := Markdown(s)
	if !strings.Contains(md, "| writes/s per writer (faults/s) |") || !strings.Contains(md, "mmap 1100 (1000), pwrite 3500 (0)") {
		t.Errorf("writer rates missing:\n%s", md)
	}
	if strings.Contains(md, "e4defrag outcomes") {
		t.Error("e4defrag row without the e4defrag tool")
	}
	if strings.Contains(md, "epochs") || strings.Contains(md, "donor,") {
		t.Errorf("default workload options named in the setup line:\n%s", md)
	}
	s.Workload.Epochs, s.Workload.Defrag.Donor, s.Workload.Defrag.EvictOneIn = 4, "shared", 4
	if md := Markdown(s); !strings.Contains(md, ", shared donor, evicting before 1 in 4 moves, 4 epochs") {
		t.Errorf("workload options missing from the setup line:\n%s", md)
	}
	s.Workload.Defrag.Tool = casespec.DefragE4defrag
	r.Defrag = append(r.Defrag, record.DefragResult{Tool: casespec.DefragE4defrag, Results: map[string]int64{"ok_unchanged": 7, "move_ext:EOPNOTSUPP": 2}})
	other := otherErrors(r)
	md = Markdown(s)
	if !strings.Contains(md, "move_ext:EOPNOTSUPP 2, ok_unchanged 7") {
		t.Errorf("e4defrag row missing:\n%s", md)
	}
	if other != 1 {
		t.Errorf("other move errors %d: e4defrag's classes must not count", other)
	}
}

// A power-cut session's table says what the replay found, not three
// unknown live passes only.
func TestMarkdownPowerCutRow(t *testing.T) {
	s := sample()
	s.Workload.PowerCut = &casespec.PowerCutSpec{}
	cut := func(acks uint64, bad, misplaced int64, recovered bool) *record.RunRecord {
		return &record.RunRecord{Outcome: record.Pass,
			PowerCut: &record.PowerCutResult{AckRecords: acks, JournalRecovered: recovered},
			Verify:   []record.VerifyResult{{Phase: "replay", BadTotal: bad, Counts: map[string]int64{"misplaced": misplaced}}}}
	}
	s.Variants[0].Runs = []*record.RunRecord{cut(100, 0, 0, true), cut(50, 0, 0, true)}
	s.Variants[1].Runs = []*record.RunRecord{cut(70, 20, 10, true), {Outcome: record.Crash, PowerCut: &record.PowerCutResult{}}}
	md := Markdown(s)
	want := "| power cut: acknowledged syncs; bad blocks after replay (misplaced); journal recovered | 150; 0 (0); 2 of 2 runs | 70; 20 (10); 1 of 1 runs |"
	if !strings.Contains(md, want) {
		t.Errorf("no power-cut row %q in\n%s", want, md)
	}
}

// A session without the baseline says so instead of showing a table that
// looks compared.
func TestMissingBaselineIsSaid(t *testing.T) {
	s := sample()
	s.Variants = s.Variants[1:]
	want := "The baseline " + s.Baseline + " was not run in this session"
	if md := Markdown(s); !strings.Contains(md, want) {
		t.Errorf("markdown does not say the baseline is missing:\n%s", md)
	}
	page, err := HTML(s, t.TempDir())
	if err != nil || !strings.Contains(string(page), want) {
		t.Errorf("html does not say the baseline is missing (%v)", err)
	}
	if md := Markdown(sample()); strings.Contains(md, "was not run in this session") {
		t.Error("a session with its baseline says it is missing")
	}
}
