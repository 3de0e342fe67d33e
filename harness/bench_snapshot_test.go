package harness

import (
	"testing"
	"time"

	"patchbay/record"
)

// TestStepTimes: steps are averaged per name in run order, from the start
// to ready, each phase to the next, and the guest's last step to the
// verdict; a run without phases counts for nothing.
func TestStepTimes(t *testing.T) {
	run := func(secs float64, at ...float64) *record.RunRecord {
		names := []string{"ready", "setup", "workload", "verify", "guest-done"}
		r := &record.RunRecord{Seconds: secs}
		for i, a := range at {
			r.Phases = append(r.Phases, record.PhaseStart{Name: names[i], AtS: a})
		}
		return r
	}
	got := stepTimes([]*record.RunRecord{
		run(24, 0.5, 0.5, 1.5, 21.5, 23),
		run(26, 1.5, 1.5, 2.5, 22.5, 25),
		{Seconds: 99}, // no phases: an old record
	})
	want := []Step{{"start", time.Second}, {"ready", 0}, {"setup", time.Second}, {"workload", 20 * time.Second}, {"verify", 2 * time.Second}, {"teardown", time.Second}}
	if len(got) != len(want) {
		t.Fatalf("steps %v, want %v", got, want)
	}
	for i := range want {
		if got[i].Name != want[i].Name || (got[i].Mean-want[i].Mean).Abs() > time.Millisecond {
			t.Errorf("step %d: %v, want %v", i, got[i], want[i])
		}
	}
	// A run that ended early: its last phase lasts to the verdict.
	got = stepTimes([]*record.RunRecord{run(10, 0.5, 0.5, 1.5)})
	if last := got[len(got)-1]; last.Name != "workload" || (last.Mean-8500*time.Millisecond).Abs() > time.Millisecond {
		t.Errorf("crashed run's steps %v: want workload 8.5s last", got)
	}
}
