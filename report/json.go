package report

import (
	"encoding/json"
	"fmt"
	"path/filepath"

	"patchbay/record"

	"patchbay/safefile"
)

// SchemaVersion is the version of summary.json's layout (see SCHEMA.md).
// Bump it when a field changes meaning or goes away; adding fields does not.
const SchemaVersion = 1

// summaryFile is summary.json: the summary's own fields at the top level
// (so older readers that unmarshal a record.Summary keep working) plus the
// statistics derived from them.
type summaryFile struct {
	Schema int `json:"schema"`
	*record.Summary
	Stats []record.VariantStats `json:"stats"`
}

// SummaryJSON is the content of summary.json.
func SummaryJSON(s *record.Summary) ([]byte, error) {
	data, err := json.MarshalIndent(summaryFile{Schema: SchemaVersion, Summary: s, Stats: s.Stats()}, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(data, '\n'), nil
}

// Read loads DIR/summary.json back into a Summary (with Dir set to dir), so
// that every report can be rendered again. The stored stats are ignored:
// they are recomputed from the runs.
func Read(dir string) (*record.Summary, error) {
	path := filepath.Join(dir, "summary.json")
	data, err := safefile.ReadFile(path, safefile.RecordCap)
	if err != nil {
		return nil, fmt.Errorf("reading results: %w", err)
	}
	f := summaryFile{Summary: &record.Summary{}}
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if f.Schema > SchemaVersion {
		return nil, fmt.Errorf("%s: schema %d is newer than this patchbay (%d)", path, f.Schema, SchemaVersion)
	}
	if f.Case == "" {
		return nil, fmt.Errorf("%s: no case name: not a patchbay summary", path)
	}
	for vi := range f.Variants {
		// A null entry would crash every renderer; drop it.
		runs := f.Variants[vi].Runs[:0]
		for _, r := range f.Variants[vi].Runs {
			if r != nil {
				runs = append(runs, r)
			}
		}
		f.Variants[vi].Runs = runs
	}
	f.Summary.Dir = dir
	return f.Summary, nil
}
