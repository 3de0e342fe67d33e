package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"patchbay/harness"
	"patchbay/record"
)

func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	root := newRootCommand()
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errOut)
	err := root.Execute()
	return out.String() + errOut.String(), err
}

func TestPlanJSONIsWhatRunSchedules(t *testing.T) {
	out, err := runCLI(t, "plan", "../../cases/ext4-journal-defrag", "--runs", "3", "--shards", "4", "--seed", "7", "--json")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var p planOutput
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	c, err := harness.LoadCase("../../cases/ext4-journal-defrag")
	if err != nil {
		t.Fatal(err)
	}
	plan := harness.Plan(c, nil, 3, 7)
	if len(p.Jobs) != len(plan) || len(plan) != 3*len(c.Variants) || p.Shards != 4 || p.Seed != 7 {
		t.Fatalf("plan has %d jobs, shards %d, seed %d; want %d, 4, 7", len(p.Jobs), p.Shards, p.Seed, len(plan))
	}
	perShard := map[int][]record.Job{}
	for j, row := range p.Jobs {
		if row.Job != j || row.Variant != plan[j].Variant || row.Index != plan[j].Index || row.Seed != plan[j].Seed {
			t.Errorf("job %d: %+v, want %+v", j, row, plan[j])
		}
		if row.Shard == nil || *row.Shard != j%4 {
			t.Errorf("job %d: shard %v, want %d", j, row.Shard, j%4)
			continue
		}
		perShard[*row.Shard] = append(perShard[*row.Shard], record.Job{Variant: row.Variant, Index: row.Index, Seed: row.Seed})
	}
	for i := 0; i < 4; i++ {
		want := harness.Shard(plan, i, 4)
		if len(perShard[i]) != len(want) {
			t.Errorf("shard %d: %v, run --shard %d/4 would run %v", i, perShard[i], i, want)
		}
	}
	if p.Jobs[0].Variant != c.Baseline || p.Jobs[len(c.Variants)].Index != 1 || p.Jobs[len(c.Variants)].Seed != 8 {
		t.Errorf("not run 0 of every variant (baseline first), then run 1: %+v", p.Jobs)
	}
}

func TestPlanTable(t *testing.T) {
	out, err := runCLI(t, "plan", "../../cases/ext4-journal-defrag", "--variant", "eopnotsupp", "--variant", "fallback", "--runs", "2", "--shards", "2", "--seed", "7")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{
		"2 variant(s) x 2 run(s) = 4 jobs, seed 7, 2 shards",
		"job  variant     run  seed  shard",
		"0    eopnotsupp  0    7     0",
		"3    fallback    1    8     1",
		"shard 1 (2 jobs): patchbay run ../../cases/ext4-journal-defrag --runs 2 --seed 7 --shard 1/2 --variant eopnotsupp --variant fallback",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	out, err = runCLI(t, "plan", "../../cases/ext4-journal-defrag")
	if err != nil || strings.Contains(out, "shard") || !strings.Contains(out, "no --seed") {
		t.Errorf("plain plan: %v\n%s", err, out)
	}
	for _, args := range [][]string{
		{"plan", "../../cases/ext4-journal-defrag", "--variant", "nope"},
		{"plan", "../../cases/ext4-journal-defrag", "--runs", "0"},
		{"plan", "no/such/case"},
	} {
		if out, err := runCLI(t, args...); err == nil {
			t.Errorf("%v accepted:\n%s", args, out)
		}
	}
}

// The shard checks come before anything is built or booted.
func TestRunShardFlags(t *testing.T) {
	for args, want := range map[string]string{
		"--shard 0/2":                       "--shard needs an explicit --seed",
		"--shard 2/2 --seed 1":              "want 0 <= i < K",
		"--shard 1 --seed 1":                "want i/K",
		"--shard 0/2 --seed 1 --stop-early": "--stop-early decides on every run",
	} {
		a := append([]string{"run", "../../cases/ext4-journal-defrag", "--results", t.TempDir(), "--cache", t.TempDir()}, strings.Fields(args)...)
		_, err := runCLI(t, a...)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("run %s: err %v, want %q", args, err, want)
		}
		if exitCode(err) != 2 {
			t.Errorf("run %s: exit %d, want 2", args, exitCode(err))
		}
	}
}
