package harness

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
	"patchbay/kernel"
	"patchbay/record"
	"patchbay/triage"
)

// unsharded is a session of 2 variants x 4 runs, seed 7, as RunCase
// would record it, with mixed outcomes and findings.
func unsharded() *record.Summary {
	c := &Case{Baseline: "eopnotsupp", Variants: map[string]casespec.Variant{"eopnotsupp": {}, "fallback": {}}}
	start := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	s := &record.Summary{
		Case: "ext4-journal-defrag", CaseFile: "cases/ext4-journal-defrag/case.yaml", Baseline: "eopnotsupp",
		Started: start, Seconds: 400, Seed: 7, Accel: "tcg", Image: "img1", PlannedRuns: 4,
		Workload: casespec.WorkloadSpec{Duration: casespec.Duration(5 * time.Second), Files: 4, Blocks: 256, MmapWriters: 2},
		Variants: []record.VariantSummary{
			{Name: "eopnotsupp", Description: "stock", Kernel: &kernel.Artifact{Key: "k-stock", Release: "6.12.117"}},
			{Name: "fallback", Description: "swap", Patches: []string{"0001.patch"}, Kernel: &kernel.Artifact{Key: "k-fb", Release: "6.12.117"}},
		},
		Dir: "results/unsharded",
	}
	outcomes := map[string][]record.Outcome{
		"eopnotsupp": {record.Pass, record.Pass, record.InfraError, record.Pass},
		"fallback":   {record.Crash, record.Pass, record.Crash, record.Fail},
	}
	for j, job := range Plan(c, nil, 4, 7) {
		i := 0
		if job.Variant == "fallback" {
			i = 1
		}
		r := &record.RunRecord{
			Case: s.Case, Variant: job.Variant, Index: job.Index, Seed: job.Seed, Kernel: s.Variants[i].Kernel.Key,
			Outcome: outcomes[job.Variant][job.Index], Dir: fmt.Sprintf("%s/%d", job.Variant, job.Index),
			Started: start.Add(time.Duration(j) * 50 * time.Second), Seconds: 40,
		}
		if r.Outcome == record.Crash {
			r.Findings = []triage.Finding{{Kind: "warning", Title: "WARNING in ext4_move_extents"}}
		}
		s.Variants[i].Runs = append(s.Variants[i].Runs, r)
	}
	return s
}

// shardOf is what `run --shard i/k` of the same session records: the same
// header, only the runs of its jobs.
func shardOf(full *record.Summary, i, k int) *record.Summary {
	c := &Case{Baseline: full.Baseline, Variants: map[string]casespec.Variant{}}
	for _, v := range full.Variants {
		c.Variants[v.Name] = casespec.Variant{}
	}
	mine := map[string]bool{}
	for _, j := range Shard(Plan(c, nil, full.PlannedRuns, full.Seed), i, k) {
		mine[fmt.Sprintf("%s#%d", j.Variant, j.Index)] = true
	}
	s := *full
	s.Shard = ShardSpec{i, k}.String()
	s.Dir = fmt.Sprintf("results/shard%d", i)
	s.Variants = nil
	for _, v := range full.Variants {
		v.Runs = nil
		for _, r := range full.Variants[len(s.Variants)].Runs {
			if mine[fmt.Sprintf("%s#%d", r.Variant, r.Index)] {
				v.Runs = append(v.Runs, r)
			}
		}
		if len(v.Runs) == 0 {
			v.Kernel = nil // RunCase builds only what the shard runs
		}
		s.Variants = append(s.Variants, v)
	}
	return &s
}

func TestMergeOfShardsEqualsUnsharded(t *testing.T) {
	full := unsharded()
	for _, k := range []int{2, 3, 8, 11} {
		var parts []*record.Summary
		for i := k - 1; i >= 0; i-- { // any order
			parts = append(parts, shardOf(full, i, k))
		}
		got, err := Merge(parts)
		if err != nil {
			t.Fatalf("%d shards: %v", k, err)
		}
		if got.Shard != "" || got.Case != full.Case || got.Seed != full.Seed || got.PlannedRuns != 4 || got.Workload != full.Workload {
			t.Errorf("%d shards: header %+v", k, got)
		}
		if len(got.MergedFrom) != k {
			t.Errorf("%d shards: merged_from %v", k, got.MergedFrom)
		}
		gj, _ := json.Marshal(got.Variants)
		wj, _ := json.Marshal(full.Variants)
		if string(gj) != string(wj) {
			t.Errorf("%d shards: runs differ:\n got %s\nwant %s", k, gj, wj)
		}
		if !reflect.DeepEqual(got.Stats(), full.Stats()) {
			t.Errorf("%d shards: stats differ:\n got %+v\nwant %+v", k, got.Stats(), full.Stats())
		}
	}
	st := full.Stats()
	if st[1].Failures != 3 || st[1].Judged != 4 || st[0].Judged != 3 {
		t.Fatalf("the sample is not what the test means: %+v", st)
	}
}

func TestMergePartial(t *testing.T) {
	full := unsharded()
	got, err := Merge([]*record.Summary{shardOf(full, 0, 4), shardOf(full, 2, 4)})
	if err != nil {
		t.Fatal(err)
	}
	if got.Shard != "0,2/4" {
		t.Errorf("shard = %q, want 0,2/4", got.Shard)
	}
	if n := len(got.Variants[0].Runs) + len(got.Variants[1].Runs); n != 4 {
		t.Errorf("%d runs, want 4", n)
	}
}

// Variants run separately with the same seed merge too.
func TestMergeVariantsRunApart(t *testing.T) {
	full := unsharded()
	a, b := *full, *full
	a.Variants, a.Dir = full.Variants[1:], "results/fb"
	b.Variants, b.Dir = full.Variants[:1], "results/stock"
	got, err := Merge([]*record.Summary{&a, &b})
	if err != nil {
		t.Fatal(err)
	}
	if got.Variants[0].Name != "eopnotsupp" || !reflect.DeepEqual(got.Stats(), full.Stats()) {
		t.Errorf("got %v, stats %+v", got.Variants[0].Name, got.Stats())
	}
}

func TestMergeRefuses(t *testing.T) {
	for name, tc := range map[string]struct {
		change func(a, b *record.Summary)
		want   string
	}{
		"case":     {func(a, b *record.Summary) { b.Case = "ext4-defrag-control" }, `is case "ext4-defrag-control"`},
		"seed":     {func(a, b *record.Summary) { b.Seed = 8 }, "ran seed 8"},
		"workload": {func(a, b *record.Summary) { b.Workload.Duration = casespec.Duration(time.Minute) }, "different workloads"},
		"image":    {func(a, b *record.Summary) { b.Image = "img2" }, "guest image"},
		"kernel": {func(a, b *record.Summary) {
			k := *b.Variants[1].Kernel
			k.Key = "k-other"
			b.Variants[1].Kernel = &k
		}, "variant fallback ran kernel k-fb in results/shard0 but kernel k-other in results/shard1"},
		"build failed": {func(a, b *record.Summary) {
			b.Variants[1].Kernel, b.Variants[1].BuildError = nil, "patch does not apply"
		}, "variant fallback built (kernel k-fb) in results/shard0 but failed to build in results/shard1"},
		"same shard twice":   {func(a, b *record.Summary) { *b = *shardOf(unsharded(), 0, 3); b.Dir = "results/again" }, "both shard 0/3"},
		"other shard count":  {func(a, b *record.Summary) { *b = *shardOf(unsharded(), 1, 2) }, "shard 0/3 but results/shard1 is shard 1/2"},
		"other planned runs": {func(a, b *record.Summary) { b.PlannedRuns = 6 }, "planned 4 runs per variant but results/shard1 planned 6"},
		"sharded and not": {func(a, b *record.Summary) {
			*b = *unsharded()
		}, "results/shard0 is shard 0/3 but results/unsharded is not sharded"},
		"overlap": {func(a, b *record.Summary) {
			a.Shard, b.Shard = "", ""
			b.Variants[0].Runs = append(b.Variants[0].Runs, a.Variants[0].Runs[0])
		}, "run eopnotsupp#0 is in both results/shard0 and results/shard1"},
	} {
		t.Run(name, func(t *testing.T) {
			// Of 3 shards, the first two both run each variant.
			a, b := shardOf(unsharded(), 0, 3), shardOf(unsharded(), 1, 3)
			tc.change(a, b)
			_, err := Merge([]*record.Summary{a, b})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
			t.Log(err)
		})
	}
	if _, err := Merge(nil); err == nil {
		t.Error("merge of nothing accepted")
	}
}

func TestLinkRuns(t *testing.T) {
	root := t.TempDir()
	full := unsharded()
	a, b := shardOf(full, 0, 2), shardOf(full, 1, 2)
	for _, p := range []*record.Summary{a, b} {
		p.Dir = filepath.Join(root, filepath.Base(p.Dir))
		for _, v := range p.Variants {
			for _, r := range v.Runs {
				d := filepath.Join(p.Dir, r.Dir)
				if err := os.MkdirAll(filepath.Join(d, "sub"), 0o755); err != nil {
					t.Fatal(err)
				}
				os.WriteFile(filepath.Join(d, "console.log"), []byte(r.Dir), 0o644)
				os.WriteFile(filepath.Join(d, "sub", "x"), nil, 0o644)
			}
		}
	}
	out := filepath.Join(root, "merged")
	if err := LinkRuns(out, []*record.Summary{a, b}); err != nil {
		t.Fatal(err)
	}
	for _, v := range full.Variants {
		for _, r := range v.Runs {
			data, err := os.ReadFile(filepath.Join(out, r.Dir, "console.log"))
			if err != nil || string(data) != r.Dir {
				t.Errorf("%s: %q %v", r.Dir, data, err)
			}
			if _, err := os.Stat(filepath.Join(out, r.Dir, "sub", "x")); err != nil {
				t.Error(err)
			}
		}
	}
	// A second pass must not overwrite what is there.
	if err := LinkRuns(out, []*record.Summary{a}); err == nil {
		t.Error("linking over existing files succeeded")
	}
	a.Variants[0].Runs[0].Dir = "../../etc"
	if err := LinkRuns(filepath.Join(root, "m2"), []*record.Summary{a}); err == nil || !strings.Contains(err.Error(), "not inside") {
		t.Errorf("escaping run folder: %v", err)
	}
}
