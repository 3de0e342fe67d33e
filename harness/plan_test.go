package harness

import (
	"context"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"

	"patchbay/casespec"
	"patchbay/record"
)

func planCase() *Case {
	return &Case{File: "case.yaml", Baseline: "eopnotsupp", Variants: map[string]casespec.Variant{
		"eopnotsupp": {}, "fallback": {}, "fallback-flush": {},
	}}
}

func TestPlanOrderAndSeeds(t *testing.T) {
	jobs := Plan(planCase(), nil, 2, 7)
	want := []record.Job{
		{Variant: "eopnotsupp", Index: 0, Seed: 7}, {Variant: "fallback", Index: 0, Seed: 7}, {Variant: "fallback-flush", Index: 0, Seed: 7},
		{Variant: "eopnotsupp", Index: 1, Seed: 8}, {Variant: "fallback", Index: 1, Seed: 8}, {Variant: "fallback-flush", Index: 1, Seed: 8},
	}
	if !reflect.DeepEqual(jobs, want) {
		t.Fatalf("Plan = %v\nwant %v", jobs, want)
	}
	if got := Plan(planCase(), []string{"fallback"}, 3, 100); !reflect.DeepEqual(got, []record.Job{{Variant: "fallback", Index: 0, Seed: 100}, {Variant: "fallback", Index: 1, Seed: 101}, {Variant: "fallback", Index: 2, Seed: 102}}) {
		t.Errorf("one variant: %v", got)
	}
}

// Every job lands in exactly one shard, with the seed of the unsharded plan.
func TestShardsPartitionThePlan(t *testing.T) {
	for _, runs := range []int{1, 2, 5} {
		for k := 1; k <= 7; k++ {
			plan := Plan(planCase(), nil, runs, 42)
			seen := map[record.Job]int{}
			for i := 0; i < k; i++ {
				for _, j := range Shard(plan, i, k) {
					seen[j]++
				}
			}
			if len(seen) != len(plan) {
				t.Fatalf("runs %d, %d shards: %d distinct jobs, want %d", runs, k, len(seen), len(plan))
			}
			for j, n := range seen {
				if n != 1 {
					t.Errorf("runs %d, %d shards: %v in %d shards", runs, k, j, n)
				}
			}
		}
	}
	plan := Plan(planCase(), []string{"eopnotsupp"}, 2, 7)
	if got := Shard(plan, 1, 2); !reflect.DeepEqual(got, []record.Job{{Variant: "eopnotsupp", Index: 1, Seed: 8}}) {
		t.Errorf("shard 1/2 = %v", got)
	}
	if got := Shard(plan, 3, 4); len(got) != 0 {
		t.Errorf("shard 3/4 of 2 jobs = %v, want none", got)
	}
}

func TestParseShard(t *testing.T) {
	for in, want := range map[string]ShardSpec{"0/1": {0, 1}, "3/4": {3, 4}, " 1 / 2 ": {1, 2}} {
		got, err := ParseShard(in)
		if err != nil || got != want {
			t.Errorf("ParseShard(%q) = %v, %v; want %v", in, got, err, want)
		}
		if got.String() != strings.ReplaceAll(in, " ", "") {
			t.Errorf("%v.String() = %q", got, got.String())
		}
	}
	for _, in := range []string{"", "1", "4/4", "-1/4", "1/0", "a/b", "1/2/3"} {
		if _, err := ParseShard(in); err == nil {
			t.Errorf("ParseShard(%q) accepted", in)
		}
	}
}

func TestSelectJobs(t *testing.T) {
	c := planCase()
	names, jobs, err := selectJobs(c, Options{Runs: 2, Seed: 7, Shard: ShardSpec{1, 2}})
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 3 || !reflect.DeepEqual(jobs, []record.Job{{Variant: "fallback", Index: 0, Seed: 7}, {Variant: "eopnotsupp", Index: 1, Seed: 8}, {Variant: "fallback-flush", Index: 1, Seed: 8}}) {
		t.Errorf("shard 1/2: %v %v", names, jobs)
	}
	names, jobs, err = selectJobs(c, Options{Runs: 5, Seed: 1, Only: []record.Job{{Variant: "fallback", Index: 3, Seed: 4}}})
	if err != nil || !reflect.DeepEqual(names, []string{"fallback"}) || !reflect.DeepEqual(jobs, []record.Job{{Variant: "fallback", Index: 3, Seed: 4}}) {
		t.Errorf("only: %v %v %v", names, jobs, err)
	}
	for name, opt := range map[string]Options{
		"unknown variant":      {Variants: []string{"nope"}},
		"only unknown":         {Variants: []string{"fallback"}, Only: []record.Job{{Variant: "eopnotsupp", Index: 0, Seed: 1}}},
		"only sharded":         {Only: []record.Job{{Variant: "fallback", Index: 0, Seed: 1}}, Shard: ShardSpec{0, 2}},
		"stop early sharded":   {StopEarly: true, Shard: ShardSpec{0, 2}},
		"stop early no base":   {StopEarly: true, Variants: []string{"fallback"}},
		"shard out of range":   {Shard: ShardSpec{2, 2}},
		"variant listed twice": {Variants: []string{"fallback", "fallback"}},
	} {
		if _, _, err := selectJobs(c, opt); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestStopEarlyReason(t *testing.T) {
	recs := func(spec map[string]string) []*record.RunRecord {
		var out []*record.RunRecord
		for _, v := range []string{"eopnotsupp", "fallback"} {
			for i, c := range spec[v] {
				o := map[rune]record.Outcome{'p': record.Pass, 'c': record.Crash, 'f': record.Fail, 'i': record.InfraError}[c]
				out = append(out, &record.RunRecord{Variant: v, Index: i, Outcome: o})
			}
		}
		return out
	}
	why := stopEarlyReason("eopnotsupp", recs(map[string]string{"eopnotsupp": "pppp", "fallback": "cccc"}))
	if !strings.Contains(why, "fallback failed 4/4 runs vs baseline eopnotsupp 0/4") || !strings.Contains(why, "p=0.029") {
		t.Errorf("reason %q", why)
	}
	if why := stopEarlyReason("eopnotsupp", recs(map[string]string{"eopnotsupp": "ppp", "fallback": "ccc"})); why != "" {
		t.Errorf("3 vs 3 cannot reach p < 0.05, got %q", why)
	}
	if why := stopEarlyReason("eopnotsupp", recs(map[string]string{"eopnotsupp": "pppp", "fallback": "cccp"})); why != "" {
		t.Errorf("3/4 vs 0/4 (p=0.14) stopped: %q", why)
	}
	if why := stopEarlyReason("eopnotsupp", recs(map[string]string{"eopnotsupp": "pppi", "fallback": "cccc"})); why == "" {
		t.Error("4/4 vs 0/3 (p=0.029) did not stop")
	}
	if why := stopEarlyReason("eopnotsupp", recs(map[string]string{"eopnotsupp": "pp", "fallback": "cccccccc"})); why != "" {
		t.Errorf("baseline with 2 judged runs stopped: %q", why)
	}
	// Infra errors are not judged: 4 failures out of 4 judged, 5 runs.
	if why := stopEarlyReason("eopnotsupp", recs(map[string]string{"eopnotsupp": "ppppi", "fallback": "icccc"})); why == "" {
		t.Error("4/4 vs 0/4 judged with infra errors beside did not stop")
	}
}

// fakeRuns plays a session without VMs: the baseline passes, fallback
// crashes, jobs in plan order.
func fakeRuns(jobs []record.Job, calls *atomic.Int32) func(i int) (*record.RunRecord, error) {
	return func(i int) (*record.RunRecord, error) {
		calls.Add(1)
		o := record.Pass
		if jobs[i].Variant == "fallback" {
			o = record.Crash
		}
		return &record.RunRecord{Variant: jobs[i].Variant, Index: jobs[i].Index, Seed: jobs[i].Seed, Outcome: o}, nil
	}
}

func TestScheduleStopsEarly(t *testing.T) {
	c := planCase()
	jobs := Plan(c, []string{"eopnotsupp", "fallback"}, 10, 1)
	stop := func(recs []*record.RunRecord) string { return stopEarlyReason("eopnotsupp", recs) }
	var calls atomic.Int32
	res := schedule(context.Background(), len(jobs), 1, fakeRuns(jobs, &calls), stop)
	// After 7 runs (eopnotsupp 0/4 failed, fallback 3/3): p = 1/35 = 0.029.
	if res.started != 7 || calls.Load() != 7 || !strings.Contains(res.stopped, "fallback failed 3/3 runs vs baseline eopnotsupp 0/4") {
		t.Fatalf("one worker: started %d, ran %d, stopped %q; want 7, 7, a reason", res.started, calls.Load(), res.stopped)
	}
	for i, r := range res.records {
		if (r != nil) != (i < 7) {
			t.Errorf("record %d: %v", i, r)
		}
	}
	// With two workers the run already going when the decision falls finishes.
	calls.Store(0)
	res = schedule(context.Background(), len(jobs), 2, fakeRuns(jobs, &calls), stop)
	if res.stopped == "" || res.started < 7 || res.started > 8 || int(calls.Load()) != res.started {
		t.Errorf("two workers: started %d, ran %d, stopped %q", res.started, calls.Load(), res.stopped)
	}
	// Without stop every job runs.
	calls.Store(0)
	res = schedule(context.Background(), len(jobs), 3, fakeRuns(jobs, &calls), nil)
	if res.started != 20 || calls.Load() != 20 || res.stopped != "" {
		t.Errorf("no stop: started %d, ran %d, stopped %q", res.started, calls.Load(), res.stopped)
	}
	// A cancelled context hands out nothing more.
	ctx, cancel := context.WithCancel(context.Background())
	calls.Store(0)
	res = schedule(ctx, len(jobs), 1, func(i int) (*record.RunRecord, error) {
		if i == 2 {
			cancel()
		}
		return fakeRuns(jobs, &calls)(i)
	}, nil)
	if res.started != 3 {
		t.Errorf("cancelled: started %d, want 3", res.started)
	}
}
