package report

import (
	"encoding/xml"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"patchbay/record"
)

// JUnit XML as read by Jenkins, GitLab and GitHub test reporters: one
// testsuite per variant, one testcase per run.
type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Skipped  int          `xml:"skipped,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name       string          `xml:"name,attr"`
	Tests      int             `xml:"tests,attr"`
	Failures   int             `xml:"failures,attr"`
	Errors     int             `xml:"errors,attr"`
	Skipped    int             `xml:"skipped,attr"`
	Time       string          `xml:"time,attr"`
	Timestamp  string          `xml:"timestamp,attr,omitempty"`
	Properties []junitProperty `xml:"properties>property,omitempty"`
	Cases      []junitCase     `xml:"testcase"`
}

type junitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitProblem `xml:"failure,omitempty"`
	Error     *junitProblem `xml:"error,omitempty"`
	Skipped   *junitProblem `xml:"skipped,omitempty"`
	SystemOut *junitText    `xml:"system-out,omitempty"`
}

// junitText is element text kept readable in the file (CDATA, real
// newlines) after dropping what XML 1.0 cannot hold.
type junitText struct {
	Text string `xml:",cdata"`
}

type junitProblem struct {
	Message string `xml:"message,attr,omitempty"`
	Type    string `xml:"type,attr,omitempty"`
	Text    string `xml:",cdata"`
}

// JUnit renders junit.xml. fail, crash and hang are <failure>s (the kernel
// broke an expectation); boot-error and infra-error are <error>s (the test
// could not run to the end); interrupted is <skipped>. A variant whose
// kernel did not build gets one "<variant> build" testcase with an <error>,
// so CI shows it instead of an empty suite. dir is the results directory,
// named in each run's system-out.
func JUnit(s *record.Summary, dir string) ([]byte, error) {
	root := junitSuites{Name: "patchbay " + s.Case}
	var total float64
	for _, v := range s.Variants {
		suite := junitSuite{Name: v.Name, Properties: suiteProperties(s, &v)}
		var secs float64
		var first time.Time
		if v.BuildError != "" {
			suite.Cases = append(suite.Cases, junitCase{
				Name: v.Name + " build", Classname: s.Case + "." + v.Name, Time: "0",
				Error: &junitProblem{Message: "kernel build failed", Type: "build-error", Text: xmlSafe(v.BuildError)},
			})
			suite.Errors++
		}
		for _, r := range v.Runs {
			c := junitCase{
				Name:      fmt.Sprintf("%s#%d seed %d", v.Name, r.Index, r.Seed),
				Classname: s.Case + "." + v.Name,
				Time:      seconds(r.Seconds),
				SystemOut: &junitText{xmlSafe(runOut(dir, r))},
			}
			p := &junitProblem{Message: problemMessage(r), Type: string(r.Outcome), Text: xmlSafe(problemText(r))}
			switch r.Outcome {
			case record.Pass:
			case record.Fail, record.Crash, record.Hang:
				c.Failure = p
				suite.Failures++
			case record.BootError, record.InfraError:
				c.Error = p
				suite.Errors++
			case record.Interrupted:
				c.Skipped = p
				suite.Skipped++
			default:
				// An outcome this renderer does not know: never let it pass.
				c.Error = p
				suite.Errors++
			}
			suite.Cases = append(suite.Cases, c)
			secs += r.Seconds
			if first.IsZero() || (!r.Started.IsZero() && r.Started.Before(first)) {
				first = r.Started
			}
		}
		suite.Tests = len(suite.Cases)
		suite.Time = seconds(secs)
		if !first.IsZero() {
			suite.Timestamp = first.UTC().Format("2006-01-02T15:04:05")
		}
		root.Tests += suite.Tests
		root.Failures += suite.Failures
		root.Errors += suite.Errors
		root.Skipped += suite.Skipped
		total += secs
		root.Suites = append(root.Suites, suite)
	}
	root.Time = seconds(total)
	data, err := xml.MarshalIndent(root, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(append([]byte(xml.Header), data...), '\n'), nil
}

func suiteProperties(s *record.Summary, v *record.VariantSummary) []junitProperty {
	props := []junitProperty{
		{"case", s.Case},
		{"baseline", fmt.Sprint(v.Name == s.Baseline)},
		{"seed", fmt.Sprint(s.Seed)},
		{"accel", s.Accel},
		{"patches", strings.Join(patchStack(v), "; ")},
	}
	if v.Kernel != nil {
		props = append(props, junitProperty{"kernel_release", v.Kernel.Release}, junitProperty{"kernel_key", v.Kernel.Key})
	}
	return props
}

func problemMessage(r *record.RunRecord) string {
	if len(r.Reasons) > 0 {
		return string(r.Outcome) + ": " + r.Reasons[0]
	}
	return string(r.Outcome)
}

func problemText(r *record.RunRecord) string {
	var b strings.Builder
	for _, why := range r.Reasons {
		fmt.Fprintf(&b, "%s\n", why)
	}
	if len(r.Findings) > 0 {
		b.WriteString("findings:\n")
		for _, f := range r.Findings {
			fmt.Fprintf(&b, "  %s (%s)\n", f.Title, f.Kind)
		}
	}
	return b.String()
}

func runOut(dir string, r *record.RunRecord) string {
	path := r.Dir
	if dir != "" && !filepath.IsAbs(path) {
		path = filepath.Join(dir, r.Dir)
	}
	return fmt.Sprintf("run directory: %s\nseed %d, kernel %s, %s, outcome %s\n", path, r.Seed, r.Release, r.Accel, r.Outcome)
}

func seconds(s float64) string { return fmt.Sprintf("%.3f", s) }

// xmlSafe replaces the characters XML 1.0 forbids (console text can carry
// escape sequences and NULs) with U+FFFD; CDATA sections are not escaped.
func xmlSafe(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\t' || r == '\n' || r == '\r',
			r >= 0x20 && r <= 0xD7FF,
			r >= 0xE000 && r <= 0xFFFD,
			r >= 0x10000 && r <= 0x10FFFF:
			return r
		}
		return '\uFFFD'
	}, s)
}
