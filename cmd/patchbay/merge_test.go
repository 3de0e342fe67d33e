package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"patchbay/casespec"
	"patchbay/harness"
	"patchbay/kernel"
	"patchbay/record"
	"patchbay/report"
	"patchbay/triage"
)

// writeSession writes a results directory as `patchbay run` would for the
// given jobs of a 2-variant x 3-run session with seed 7: summary.json and
// the reports, and a run folder per run.
func writeSession(t *testing.T, dir, shard string, jobs []record.Job) *record.Summary {
	t.Helper()
	start := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	s := &record.Summary{
		Case: "ext4-journal-defrag", CaseFile: "cases/ext4-journal-defrag/case.yaml", Baseline: "eopnotsupp",
		Started: start, Seconds: 100, Seed: 7, Accel: "tcg", Image: "img", PlannedRuns: 3, Shard: shard,
		Workload: casespec.WorkloadSpec{Duration: casespec.Duration(5 * time.Second), Files: 4, Blocks: 256, MmapWriters: 2},
		Variants: []record.VariantSummary{{Name: "eopnotsupp"}, {Name: "fallback", Patches: []string{"0001.patch"}}},
	}
	outcome := map[string][]record.Outcome{
		"eopnotsupp": {record.Pass, record.Pass, record.Pass},
		"fallback":   {record.Crash, record.Pass, record.Fail},
	}
	for _, j := range jobs {
		i := 0
		if j.Variant == "fallback" {
			i = 1
		}
		v := &s.Variants[i]
		v.Kernel = &kernel.Artifact{Key: "key-" + j.Variant, Release: "6.12.117"}
		r := &record.RunRecord{
			Case: s.Case, Variant: j.Variant, Index: j.Index, Seed: j.Seed, Kernel: v.Kernel.Key,
			Outcome: outcome[j.Variant][j.Index], Dir: fmt.Sprintf("%s/%d", j.Variant, j.Index),
			Started: start.Add(time.Duration(j.Index) * time.Minute), Seconds: 30,
		}
		if r.Outcome == record.Crash {
			r.Findings = []triage.Finding{{Kind: "warning", Title: "WARNING in ext4_move_extents"}}
			r.Reasons = []string{"WARNING in ext4_move_extents"}
		}
		v.Runs = append(v.Runs, r)
		rd := filepath.Join(dir, r.Dir)
		if err := os.MkdirAll(rd, 0o755); err != nil {
			t.Fatal(err)
		}
		data, _ := json.Marshal(r)
		os.WriteFile(filepath.Join(rd, "run.json"), data, 0o644)
		os.WriteFile(filepath.Join(rd, "console.log"), []byte("console of "+r.Dir), 0o644)
	}
	if err := report.Write(dir, s); err != nil {
		t.Fatal(err)
	}
	s.Dir = dir
	return s
}

func sessionPlan(t *testing.T) []record.Job {
	c := &harness.Case{Baseline: "eopnotsupp", Variants: map[string]casespec.Variant{"eopnotsupp": {}, "fallback": {}}}
	return harness.Plan(c, nil, 3, 7)
}

// The acceptance test: a merge of two shard results equals an
// unsharded run's summary (same runs, same stats).
func TestMergeCommandShardsEqualUnsharded(t *testing.T) {
	root := t.TempDir()
	plan := sessionPlan(t)
	full := filepath.Join(root, "full")
	writeSession(t, full, "", plan)
	s0, s1 := filepath.Join(root, "s0"), filepath.Join(root, "s1")
	writeSession(t, s0, "0/2", harness.Shard(plan, 0, 2))
	writeSession(t, s1, "1/2", harness.Shard(plan, 1, 2))

	out := filepath.Join(root, "merged")
	text, err := runCLI(t, "merge", out, s1, s0)
	if exitCode(err) != 1 { // fallback crashed and failed: exit 1, as run would
		t.Fatalf("merge: exit %d (%v)\n%s", exitCode(err), err, text)
	}
	if !strings.Contains(text, "| outcome | pass 3 | pass 1, fail 1, crash 1 |") || !strings.Contains(text, "merged 2 results directories") {
		t.Errorf("output:\n%s", text)
	}
	want, err := report.Read(full)
	if err != nil {
		t.Fatal(err)
	}
	got, err := report.Read(out)
	if err != nil {
		t.Fatal(err)
	}
	gj, _ := json.Marshal(got.Variants)
	wj, _ := json.Marshal(want.Variants)
	if string(gj) != string(wj) {
		t.Errorf("merged runs differ from the unsharded run's:\n got %s\nwant %s", gj, wj)
	}
	if !reflect.DeepEqual(got.Stats(), want.Stats()) {
		t.Errorf("stats differ:\n got %+v\nwant %+v", got.Stats(), want.Stats())
	}
	if got.Shard != "" || got.Seed != 7 || len(got.MergedFrom) != 2 {
		t.Errorf("shard %q seed %d merged_from %v", got.Shard, got.Seed, got.MergedFrom)
	}
	for _, f := range []string{"summary.json", "summary.md", "report.html", "junit.xml", "kcidb.json"} {
		if st, err := os.Stat(filepath.Join(out, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
	for _, j := range plan {
		rel := fmt.Sprintf("%s/%d/console.log", j.Variant, j.Index)
		a, err1 := os.Stat(filepath.Join(out, rel))
		src := s0
		if len(harness.Shard(plan, 1, 2)) > 0 && containsJob(harness.Shard(plan, 1, 2), j) {
			src = s1
		}
		b, err2 := os.Stat(filepath.Join(src, rel))
		if err1 != nil || err2 != nil || !os.SameFile(a, b) {
			t.Errorf("%s: not linked from %s (%v, %v)", rel, src, err1, err2)
		}
	}
	html, _ := os.ReadFile(filepath.Join(out, "report.html"))
	if !strings.Contains(string(html), `href="fallback/0/console.log"`) {
		t.Error("merged report.html does not link the runs' logs")
	}
}

func containsJob(jobs []record.Job, j record.Job) bool {
	for _, x := range jobs {
		if x == j {
			return true
		}
	}
	return false
}

func TestMergeCommandRefuses(t *testing.T) {
	root := t.TempDir()
	plan := sessionPlan(t)
	s0, s1 := filepath.Join(root, "s0"), filepath.Join(root, "s1")
	writeSession(t, s0, "0/2", harness.Shard(plan, 0, 2))
	writeSession(t, s1, "1/2", harness.Shard(plan, 1, 2))
	other := filepath.Join(root, "other-seed")
	s := writeSession(t, other, "1/2", harness.Shard(plan, 1, 2))
	s.Seed = 8
	if err := report.Write(other, s); err != nil {
		t.Fatal(err)
	}
	full := filepath.Join(root, "full")
	writeSession(t, full, "", plan)
	nonEmpty := filepath.Join(root, "nonempty")
	os.MkdirAll(nonEmpty, 0o755)
	os.WriteFile(filepath.Join(nonEmpty, "x"), nil, 0o644)

	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"seed":        {[]string{filepath.Join(root, "m1"), s0, other}, s0 + " ran seed 7 but " + other + " ran seed 8"},
		"overlap":     {[]string{filepath.Join(root, "m2"), s0, s0}, "are both shard 0/2"},
		"unsharded":   {[]string{filepath.Join(root, "m3"), s0, full}, s0 + " is shard 0/2 but " + full + " is not sharded"},
		"out in use":  {[]string{nonEmpty, s0, s1}, nonEmpty + " is not empty"},
		"out inside":  {[]string{filepath.Join(s0, "merged"), s0, s1}, "is inside the input " + s0},
		"not results": {[]string{filepath.Join(root, "m4"), s0, nonEmpty}, "summary.json"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := runCLI(t, append([]string{"merge"}, tc.args...)...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if exitCode(err) != 2 {
				t.Errorf("exit %d, want 2", exitCode(err))
			}
			if _, err := os.Stat(tc.args[0]); err == nil && tc.args[0] != nonEmpty {
				t.Errorf("%s left behind", tc.args[0])
			}
		})
	}
}

func TestMergeCommandPartial(t *testing.T) {
	root := t.TempDir()
	plan := sessionPlan(t)
	s1 := filepath.Join(root, "s1")
	writeSession(t, s1, "1/3", harness.Shard(plan, 1, 3))
	out := filepath.Join(root, "m")
	text, err := runCLI(t, "merge", out, s1)
	if exitCode(err) == 2 {
		t.Fatalf("%v\n%s", err, text)
	}
	if !strings.Contains(text, "not every shard is here: merged shards 1/3") {
		t.Errorf("no warning about missing shards:\n%s", text)
	}
	got, err := report.Read(out)
	if err != nil || got.Shard != "1/3" {
		t.Errorf("shard %q, %v", got.Shard, err)
	}
}

// A merge that fails half way (the second part's run folder is gone after
// the first part's folders were linked) leaves OUT as it was, here an
// empty directory, and nothing beside it.
func TestMergeCommandFailureLeavesNoPartialOut(t *testing.T) {
	root := t.TempDir()
	plan := sessionPlan(t)
	s0, s1 := filepath.Join(root, "s0"), filepath.Join(root, "s1")
	writeSession(t, s0, "0/2", harness.Shard(plan, 0, 2))
	writeSession(t, s1, "1/2", harness.Shard(plan, 1, 2))
	if err := os.RemoveAll(filepath.Join(s1, "fallback")); err != nil {
		t.Fatal(err)
	}
	outs := filepath.Join(root, "outs")
	for _, name := range []string{"empty", "new"} {
		out := filepath.Join(outs, name)
		if name == "empty" {
			if err := os.MkdirAll(out, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		_, err := runCLI(t, "merge", out, s0, s1)
		if err == nil || exitCode(err) != 2 {
			t.Fatalf("%s: merge with a missing run folder: err %v, exit %d", name, err, exitCode(err))
		}
		entries, rerr := os.ReadDir(out)
		switch {
		case name == "new" && !os.IsNotExist(rerr):
			t.Errorf("%s: OUT left behind: %v %v", name, entries, rerr)
		case name == "empty" && (rerr != nil || len(entries) > 0):
			t.Errorf("%s: OUT holds %v after the failed merge (%v)", name, entries, rerr)
		}
	}
	if left, _ := os.ReadDir(outs); len(left) != 1 || left[0].Name() != "empty" {
		var names []string
		for _, e := range left {
			names = append(names, e.Name())
		}
		t.Errorf("left beside OUT: %v", names)
	}
	// And a merge that works renames onto the empty OUT.
	writeSession(t, s1, "1/2", harness.Shard(plan, 1, 2))
	out := filepath.Join(outs, "empty")
	if text, err := runCLI(t, "merge", out, s0, s1); exitCode(err) == 2 {
		t.Fatalf("%v\n%s", err, text)
	}
	if _, err := os.Stat(filepath.Join(out, "fallback", "1", "console.log")); err != nil {
		t.Errorf("merged run folder missing: %v", err)
	}
}
