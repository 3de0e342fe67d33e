// Package rundir reads one recorded run back: its run.json, the summary of
// the results directory it belongs to, the case it ran and its kernel.
// The tools that start from a failed run (reproducer, minimize) share it.
package rundir

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"patchbay/casespec"
	"patchbay/harness"
	"patchbay/kernel"
	"patchbay/record"
	"patchbay/report"
)

// maxRecord bounds what is read of run.json.
const maxRecord = 64 << 20

// Run is a recorded run with what it needs to run again.
type Run struct {
	Dir     string            // the run folder, <results>/<variant>/<n>
	Record  *record.RunRecord // run.json
	Summary *record.Summary   // the results directory's summary.json
	// Case is the case file loaded again with the inputs the session used
	// and the workload as run (--duration included).
	Case *harness.Case
	// Kernel is the variant's kernel as the session recorded it (nil when
	// the summary has none, e.g. the build failed).
	Kernel *kernel.Artifact
}

// Load reads the run folder dir. casePath overrides the case file the
// summary names (recorded relative to where patchbay ran).
func Load(dir, casePath string) (*Run, error) {
	path := filepath.Join(dir, "run.json")
	data, err := readRegular(path, maxRecord)
	if err != nil {
		return nil, fmt.Errorf("%s is not a run folder (<results>/<variant>/<n>/): %w", dir, err)
	}
	var rec record.RunRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if rec.Case == "" || rec.Variant == "" {
		return nil, fmt.Errorf("%s: no case or variant recorded", path)
	}
	resDir := ResultsDirOf(dir, rec.Dir)
	sum, err := report.Read(resDir)
	if err != nil {
		return nil, fmt.Errorf("the results directory of %s: %w", dir, err)
	}
	if sum.Case != rec.Case {
		return nil, fmt.Errorf("%s is a run of case %q but %s/summary.json is case %q", dir, rec.Case, resDir, sum.Case)
	}
	if casePath == "" {
		casePath = sum.CaseFile
		if _, err := os.Stat(casePath); errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("case file %s (recorded relative to where patchbay ran) not found: pass --case", casePath)
		}
	}
	c, err := harness.LoadCaseWith(casePath, sum.Inputs)
	if err != nil {
		return nil, err
	}
	if c.Name != rec.Case {
		return nil, fmt.Errorf("%s is case %q but the run is of case %q", c.File, c.Name, rec.Case)
	}
	if _, ok := c.Variants[rec.Variant]; !ok {
		return nil, fmt.Errorf("%s has no variant %q any more", c.File, rec.Variant)
	}
	if sum.Workload.Files > 0 {
		c.Workload = sum.Workload // as run: the seed drives this workload
		// Summaries from before these fields existed ran their defaults.
		if c.Workload.Kind == "" {
			c.Workload.Kind = casespec.WorkloadPatchbay
		}
		if c.Workload.Defrag.Tool == "" {
			c.Workload.Defrag.Tool = casespec.DefragIoctl
		}
	}
	r := &Run{Dir: dir, Record: &rec, Summary: sum, Case: c}
	for _, v := range sum.Variants {
		if v.Name == rec.Variant {
			r.Kernel = v.Kernel
		}
	}
	return r, nil
}

// readRegular reads a regular file of at most limit bytes: a FIFO or a
// device named run.json must not hang or flood us.
func readRegular(path string, limit int64) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	if st.Size() > limit {
		return nil, fmt.Errorf("%s: %d bytes, more than %d", path, st.Size(), limit)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, limit))
}

// ResultsDirOf is the results directory a run folder belongs to: dir
// without the run's relative Dir ("fallback/0"), else two levels up.
func ResultsDirOf(dir, rel string) string {
	clean := filepath.Clean(dir)
	if rel != "" && filepath.IsLocal(rel) {
		suffix := string(filepath.Separator) + filepath.Clean(rel)
		if strings.HasSuffix(clean, suffix) {
			return strings.TrimSuffix(clean, suffix)
		}
		if clean == filepath.Clean(rel) {
			return "."
		}
	}
	return filepath.Dir(filepath.Dir(clean))
}
