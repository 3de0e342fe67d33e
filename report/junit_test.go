package report

import (
	"encoding/xml"
	"strings"
	"testing"
)

type parsedSuites struct {
	XMLName  xml.Name `xml:"testsuites"`
	Tests    int      `xml:"tests,attr"`
	Failures int      `xml:"failures,attr"`
	Errors   int      `xml:"errors,attr"`
	Skipped  int      `xml:"skipped,attr"`
	Suites   []struct {
		Name     string `xml:"name,attr"`
		Tests    int    `xml:"tests,attr"`
		Failures int    `xml:"failures,attr"`
		Errors   int    `xml:"errors,attr"`
		Skipped  int    `xml:"skipped,attr"`
		Props    []struct {
			Name  string `xml:"name,attr"`
			Value string `xml:"value,attr"`
		} `xml:"properties>property"`
		Cases []struct {
			Name      string  `xml:"name,attr"`
			Classname string  `xml:"classname,attr"`
			Time      float64 `xml:"time,attr"`
			Failure   *struct {
				Message string `xml:"message,attr"`
				Type    string `xml:"type,attr"`
				Text    string `xml:",chardata"`
			} `xml:"failure"`
			Error *struct {
				Message string `xml:"message,attr"`
				Type    string `xml:"type,attr"`
				Text    string `xml:",chardata"`
			} `xml:"error"`
			Skipped *struct {
				Message string `xml:"message,attr"`
			} `xml:"skipped"`
			SystemOut string `xml:"system-out"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

func TestJUnitParsesBackWithCounts(t *testing.T) {
	data, err := JUnit(richSample(), "/results/ext4-journal-defrag/20261128-103803")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(data), xml.Header) {
		t.Error("junit.xml lacks the XML header")
	}
	var got parsedSuites
	if err := xml.Unmarshal(data, &got); err != nil {
		t.Fatalf("junit.xml does not parse: %v\n%s", err, data)
	}
	// 3 baseline runs + 7 fallback runs + 1 build error of "broken".
	if got.Tests != 11 || got.Failures != 3 || got.Errors != 3 || got.Skipped != 1 {
		t.Errorf("totals: tests %d failures %d errors %d skipped %d", got.Tests, got.Failures, got.Errors, got.Skipped)
	}
	if len(got.Suites) != 3 {
		t.Fatalf("%d testsuites, want one per variant", len(got.Suites))
	}
	want := []struct {
		name                             string
		tests, failures, errors, skipped int
	}{{"eopnotsupp", 3, 0, 0, 0}, {"fallback", 7, 3, 2, 1}, {"broken", 1, 0, 1, 0}}
	for i, w := range want {
		s := got.Suites[i]
		if s.Name != w.name || s.Tests != w.tests || len(s.Cases) != w.tests || s.Failures != w.failures || s.Errors != w.errors || s.Skipped != w.skipped {
			t.Errorf("suite %d: %s tests %d (%d cases) failures %d errors %d skipped %d, want %+v",
				i, s.Name, s.Tests, len(s.Cases), s.Failures, s.Errors, s.Skipped, w)
		}
	}

	fb := got.Suites[1]
	crash := fb.Cases[0]
	if crash.Name != "fallback#0 seed 100" || crash.Classname != "ext4-journal-defrag.fallback" || crash.Time != 20 {
		t.Errorf("crash case: %q %q %v", crash.Name, crash.Classname, crash.Time)
	}
	if crash.Failure == nil || crash.Failure.Type != "crash" || crash.Failure.Message != "crash: "+warnTitle ||
		!strings.Contains(crash.Failure.Text, "findings:\n  "+warnTitle+" (WARNING)") {
		t.Errorf("crash failure: %+v", crash.Failure)
	}
	if !strings.Contains(crash.SystemOut, "run directory: /results/ext4-journal-defrag/20261128-103803/fallback/0") {
		t.Errorf("crash system-out: %q", crash.SystemOut)
	}
	if f := fb.Cases[1].Failure; f == nil || !strings.Contains(f.Text, "bad blocks = 4, expected at most 0\nverify dropcache") {
		t.Errorf("fail case: %+v", f)
	}
	if fb.Cases[2].Failure == nil || fb.Cases[2].Failure.Type != "hang" {
		t.Errorf("hang case: %+v", fb.Cases[2].Failure)
	}
	if c := fb.Cases[3]; c.Failure != nil || c.Error != nil || c.Skipped != nil {
		t.Errorf("pass case has a problem element: %+v", c)
	}
	if e := fb.Cases[4].Error; e == nil || e.Type != "infra-error" {
		t.Errorf("infra-error case: %+v", e)
	}
	if fb.Cases[5].Skipped == nil {
		t.Error("interrupted case is not skipped")
	}
	// The nasty title survives the round trip byte for byte.
	if e := fb.Cases[6].Error; e == nil || e.Type != "boot-error" || !strings.Contains(e.Text, nastyTitle) {
		t.Errorf("boot-error case: %+v", e)
	}
	if b := got.Suites[2].Cases[0]; b.Name != "broken build" || b.Error == nil || !strings.Contains(b.Error.Text, "hunk #1 FAILED") {
		t.Errorf("build error case: %+v", b)
	}
	props := map[string]string{}
	for _, p := range got.Suites[0].Props {
		props[p.Name] = p.Value
	}
	if props["baseline"] != "true" || props["kernel_release"] != "6.12.117" || props["seed"] != "100" {
		t.Errorf("baseline properties: %v", props)
	}
}

func TestJUnitSurvivesConsoleGarbage(t *testing.T) {
	s := richSample()
	r := s.Variants[1].Runs[1]
	r.Reasons = []string{"guest said \x1b[31mred\x00 and ]]> then <done>"}
	data, err := JUnit(s, "")
	if err != nil {
		t.Fatal(err)
	}
	var got parsedSuites
	if err := xml.Unmarshal(data, &got); err != nil {
		t.Fatalf("junit.xml does not parse: %v\n%s", err, data)
	}
	f := got.Suites[1].Cases[1].Failure
	if f == nil || !strings.Contains(f.Text, "guest said \uFFFD[31mred\uFFFD and ]]> then <done>") ||
		!strings.Contains(f.Message, "and ]]> then <done>") {
		t.Errorf("failure after the round trip: %+v", f)
	}
	if !strings.Contains(got.Suites[1].Cases[1].SystemOut, "run directory: fallback/1\n") {
		t.Errorf("system-out without a results dir: %q", got.Suites[1].Cases[1].SystemOut)
	}
}
