package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestLiveStatus: log lines go above the block, which is redrawn in place
// (cursor up over exactly the lines drawn, clear, draw).
func TestLiveStatus(t *testing.T) {
	var out bytes.Buffer
	s := newLiveStatus(&out)
	s.Set([]string{"eopnotsupp: 1 runs", "fallback: 1 runs, undecided"})
	s.Write([]byte("[round 2] booting\n"))
	s.Set([]string{"eopnotsupp: 2 runs", "fallback: 2 runs, differs-worse", "10m left"})
	got := out.String()
	want := "\x1b[1meopnotsupp: 1 runs\x1b[0m\n\x1b[1mfallback: 1 runs, undecided\x1b[0m\n" +
		"\x1b[2F\x1b[J[round 2] booting\n\x1b[1meopnotsupp: 1 runs\x1b[0m\n\x1b[1mfallback: 1 runs, undecided\x1b[0m\n" +
		"\x1b[2F\x1b[J\x1b[1meopnotsupp: 2 runs\x1b[0m\n\x1b[1mfallback: 2 runs, differs-worse\x1b[0m\n\x1b[1m10m left\x1b[0m\n"
	if got != want {
		t.Errorf("got\n%q\nwant\n%q", got, want)
	}
	if strings.Count(got, "booting") != 1 {
		t.Error("log line repeated")
	}
}
