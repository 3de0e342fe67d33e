package report

import (
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"

	"patchbay/record"
)

// KCIDB I/O schema version written. 4.2 is the first v4 minor with the MISS
// test status, which is what an infra-error is; v4 forbids unknown
// properties, so everything else goes under "misc".
const (
	kcidbMajor  = 4
	kcidbMinor  = 2
	kcidbOrigin = "patchbay"
	// kcidbPathRoot is the first element of every test path: the
	// subsystem the cases exercise.
	kcidbPathRoot = "ext4"
	// kcidbExcerptMax is the schema's maxLength for log_excerpt.
	kcidbExcerptMax = 16384
)

type kcidbReport struct {
	Version   kcidbVersion    `json:"version"`
	Checkouts []kcidbCheckout `json:"checkouts"`
	Builds    []kcidbBuild    `json:"builds"`
	Tests     []kcidbTest     `json:"tests"`
}

type kcidbVersion struct {
	Major int `json:"major"`
	Minor int `json:"minor"`
}

type kcidbCheckout struct {
	ID        string         `json:"id"`
	Origin    string         `json:"origin"`
	Comment   string         `json:"comment,omitempty"`
	StartTime string         `json:"start_time,omitempty"`
	Valid     bool           `json:"valid"`
	Misc      map[string]any `json:"misc,omitempty"`
}

type kcidbBuild struct {
	ID           string         `json:"id"`
	Origin       string         `json:"origin"`
	CheckoutID   string         `json:"checkout_id"`
	Comment      string         `json:"comment,omitempty"`
	Duration     float64        `json:"duration,omitempty"`
	Architecture string         `json:"architecture"`
	Compiler     string         `json:"compiler,omitempty"`
	ConfigName   string         `json:"config_name"`
	LogExcerpt   string         `json:"log_excerpt,omitempty"`
	Valid        bool           `json:"valid"`
	Misc         map[string]any `json:"misc,omitempty"`
}

type kcidbTest struct {
	ID          string            `json:"id"`
	Origin      string            `json:"origin"`
	BuildID     string            `json:"build_id"`
	Path        string            `json:"path"`
	Comment     string            `json:"comment,omitempty"`
	Status      string            `json:"status"`
	StartTime   string            `json:"start_time,omitempty"`
	Duration    float64           `json:"duration,omitempty"`
	LogExcerpt  string            `json:"log_excerpt,omitempty"`
	Environment *kcidbEnvironment `json:"environment,omitempty"`
	Misc        map[string]any    `json:"misc,omitempty"`
}

type kcidbEnvironment struct {
	Comment string `json:"comment,omitempty"`
}

// KCIDBStatus maps an outcome onto a KCIDB test status: the kernel failed
// (FAIL), the test could not finish and the kernel's state is unknown
// (ERROR: no SSH after boot), the harness failed (MISS), the user stopped
// it (SKIP).
func KCIDBStatus(o record.Outcome) string {
	switch o {
	case record.Pass:
		return "PASS"
	case record.Fail, record.Crash, record.Hang:
		return "FAIL"
	case record.BootError:
		return "ERROR"
	case record.InfraError:
		return "MISS"
	case record.Interrupted:
		return "SKIP"
	}
	return "ERROR"
}

// KCIDB renders kcidb.json: one checkout for the summary, one build per
// variant, one test per run. A build's PASS/FAIL is "valid" in v4 (a
// "status" property only exists from v5) and is repeated as misc.status.
// Log paths are relative to the results directory and go under misc: the
// schema's log_url must be an absolute URL.
func KCIDB(s *record.Summary) ([]byte, error) {
	stamp := s.Started.UTC().Format("20060102-150405")
	checkoutID := fmt.Sprintf("%s:%s:%s", kcidbOrigin, s.Case, stamp)
	rep := kcidbReport{
		Version: kcidbVersion{kcidbMajor, kcidbMinor},
		Builds:  []kcidbBuild{},
		Tests:   []kcidbTest{},
	}
	co := kcidbCheckout{
		ID: checkoutID, Origin: kcidbOrigin, Valid: true,
		Comment: fmt.Sprintf("patchbay %s: %s", s.Case, oneLine(s.Question)),
		Misc: map[string]any{
			"case": s.Case, "case_file": s.CaseFile, "baseline": s.Baseline, "seed": s.Seed,
			"accel": s.Accel, "image_key": s.Image,
		},
	}
	if !s.Started.IsZero() {
		co.StartTime = s.Started.UTC().Format(time.RFC3339Nano)
	}
	for _, v := range s.Variants {
		if v.Kernel != nil && v.Kernel.Source != "" {
			co.Misc["source"] = v.Kernel.Source
			break
		}
	}
	rep.Checkouts = []kcidbCheckout{co}
	for _, v := range s.Variants {
		buildID := checkoutID + ":" + v.Name
		valid := v.Kernel != nil && v.BuildError == ""
		b := kcidbBuild{
			ID: buildID, Origin: kcidbOrigin, CheckoutID: checkoutID,
			Comment:      v.Description,
			Architecture: "x86_64",
			// Every variant of a case shares its kconfig fragments on top
			// of tinyconfig; the patches are what differs.
			ConfigName: "tinyconfig+" + s.Case,
			LogExcerpt: truncate(v.BuildError, kcidbExcerptMax),
			Valid:      valid,
			Misc: map[string]any{
				"status": map[bool]string{true: "PASS", false: "FAIL"}[valid], "variant": v.Name,
				"patches": nonNil(patchStack(&v)), "baseline": v.Name == s.Baseline,
			},
		}
		if v.Kernel != nil {
			b.Compiler = v.Kernel.Compiler
			b.Duration = v.Kernel.BuildSecs
			b.Misc["kernel_key"] = v.Kernel.Key
			b.Misc["kernel_release"] = v.Kernel.Release
		}
		rep.Builds = append(rep.Builds, b)
		for _, r := range v.Runs {
			t := kcidbTest{
				ID: fmt.Sprintf("%s:%d", buildID, r.Index), Origin: kcidbOrigin, BuildID: buildID,
				Path:       kcidbPathRoot + "." + s.Case + "." + v.Name,
				Comment:    fmt.Sprintf("%s #%d seed %d: %s", v.Name, r.Index, r.Seed, r.Outcome),
				Status:     KCIDBStatus(r.Outcome),
				Duration:   r.Seconds,
				LogExcerpt: truncate(problemText(r), kcidbExcerptMax),
				Misc: map[string]any{
					"seed": r.Seed, "outcome": r.Outcome, "reasons": nonNil(r.Reasons), "dir": r.Dir,
					"titles": titles(r), "kernel_release": r.Release,
				},
			}
			if r.Accel != "" {
				t.Environment = &kcidbEnvironment{Comment: "QEMU x86_64, " + r.Accel}
			}
			if !r.Started.IsZero() {
				t.StartTime = r.Started.UTC().Format(time.RFC3339Nano)
			}
			rep.Tests = append(rep.Tests, t)
		}
	}
	data, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(data, '\n'), nil
}

func titles(r *record.RunRecord) []string {
	out := []string{}
	seen := map[string]bool{}
	for _, f := range r.Findings {
		if !seen[f.Title] {
			seen[f.Title] = true
			out = append(out, f.Title)
		}
	}
	return out
}

// nonNil keeps KCIDB's "no property can be null" rule for lists.
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// truncate cuts s to at most n bytes on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
