package harness

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"patchbay/record"
	"patchbay/seqtest"
)

// fakeRuns returns a run function whose outcome depends only on the job:
// fail(job) decides it. The rounds logic is what is under test here; the
// runs themselves are tested end to end elsewhere.
func fakeRounds(fail func(record.Job) bool) (func(record.Job) (*record.RunRecord, error), *[]record.Job) {
	var mu sync.Mutex
	var jobs []record.Job
	return func(j record.Job) (*record.RunRecord, error) {
		mu.Lock()
		jobs = append(jobs, j)
		mu.Unlock()
		o := record.Pass
		if fail(j) {
			o = record.Fail
		}
		return &record.RunRecord{Variant: j.Variant, Index: j.Index, Seed: j.Seed, Outcome: o, Seconds: 1}, nil
	}, &jobs
}

func TestDecideScheduleStopsWhenDecided(t *testing.T) {
	names := []string{"base", "bad", "same"}
	d, err := newDecider(seqtest.Default(), "base", names)
	if err != nil {
		t.Fatal(err)
	}
	run, jobs := fakeRounds(func(j record.Job) bool { return j.Variant == "bad" })
	var lines []string
	// One worker: the rounds are handed out and finish in order, so the
	// counts below are exact (with two, a slow baseline run lets the other
	// worker run ahead: TestDecideScheduleTwoWorkers).
	recs, errs, rounds, ended := decideSchedule(context.Background(), d, names, 100, 1, 80, time.Time{}, run, func(s []string) { lines = append(lines, strings.Join(s, " | ")) })
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	if got := d.result["bad"]; got.Decision != seqtest.Worse || got.DecidedAt != 5 {
		t.Errorf("bad: %s at round %d, want differs-worse at 5", got.Decision, got.DecidedAt)
	}
	// "same" never fails, like the baseline: it is equivalent once the
	// exact bound of 0 in n is below the margin (n = 29), which happens at
	// the final look when 80 runs are spent (30+ rounds).
	if ended != "budget of 80 runs" {
		t.Errorf("ended: %q", ended)
	}
	d.finish()
	if got := d.result["same"]; got.Decision != seqtest.Equivalent {
		t.Errorf("same: %s (%s), want equivalent", got.Decision, got.Reason)
	}
	bad := 0
	for _, j := range *jobs {
		if j.Variant == "bad" {
			bad++
		}
		if j.Seed != 100+uint64(j.Index) {
			t.Errorf("job %s: seed is not seed+round", j)
		}
	}
	// One worker: "bad" stops at the decision after round 5.
	if bad != 5 {
		t.Errorf("bad ran %d times, want 5", bad)
	}
	if len(recs) != len(*jobs) || rounds < 5 || len(lines) != len(recs) {
		t.Errorf("%d records, %d jobs, %d rounds, %d status lines", len(recs), len(*jobs), rounds, len(lines))
	}
	if !strings.Contains(lines[len(lines)-1], "bad: ") {
		t.Errorf("status line: %q", lines[len(lines)-1])
	}
	if !strings.Contains(lines[0], "worse at 5 of 5 at the earliest") && !strings.Contains(lines[1], "worse at 5 of 5 at the earliest") {
		t.Errorf("first status lines do not say where the first boundary is: %q / %q", lines[0], lines[1])
	}
}

func TestDecideScheduleTimeBudget(t *testing.T) {
	names := []string{"base", "v"}
	d, _ := newDecider(seqtest.Default(), "base", names)
	run, jobs := fakeRounds(func(record.Job) bool { return false })
	slow := func(j record.Job) (*record.RunRecord, error) {
		time.Sleep(20 * time.Millisecond)
		r, err := run(j)
		r.Seconds = 0.02
		return r, err
	}
	_, _, _, ended := decideSchedule(context.Background(), d, names, 1, 1, 0, time.Now().Add(150*time.Millisecond), slow, nil)
	if ended != "time budget" {
		t.Errorf("ended %q", ended)
	}
	if n := len(*jobs); n < 2 || n > 8 || n%2 != 0 {
		t.Errorf("%d runs in a 150 ms budget of 20 ms runs, want whole rounds, 2..8", n)
	}
}

func TestDecideScheduleCancel(t *testing.T) {
	names := []string{"base", "v"}
	d, _ := newDecider(seqtest.Default(), "base", names)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	run, jobs := fakeRounds(func(record.Job) bool { return false })
	_, _, _, ended := decideSchedule(ctx, d, names, 1, 1, 10, time.Time{}, run, nil)
	if ended != "interrupted" || len(*jobs) != 0 {
		t.Errorf("ended %q after %d runs", ended, len(*jobs))
	}
}

// Two workers hand out rounds as workers free up, in whatever order runs
// end; the decisions must not depend on that order.
func TestDecideScheduleTwoWorkers(t *testing.T) {
	for i := 0; i < 50; i++ {
		names := []string{"base", "bad", "same"}
		d, err := newDecider(seqtest.Default(), "base", names)
		if err != nil {
			t.Fatal(err)
		}
		run, jobs := fakeRounds(func(j record.Job) bool { return j.Variant == "bad" })
		var lines []string
		_, errs, _, _ := decideSchedule(context.Background(), d, names, 100, 2, 80, time.Time{}, run, func(s []string) { lines = append(lines, strings.Join(s, " | ")) })
		if len(errs) != 0 {
			t.Fatal(errs)
		}
		if got := d.result["bad"]; got.Decision != seqtest.Worse || got.DecidedAt != 5 {
			t.Fatalf("try %d: bad: %s at round %d (%s), want differs-worse at 5", i, got.Decision, got.DecidedAt, got.Reason)
		}
		for _, j := range *jobs {
			if j.Seed != 100+uint64(j.Index) {
				t.Fatalf("job %s: seed is not seed+round", j)
			}
		}
	}
}
