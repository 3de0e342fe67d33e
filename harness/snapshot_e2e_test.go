package harness

import (
	"bytes"
	"context"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"patchbay/record"
	"patchbay/vm"
)

// TestSnapshotRestore makes a snapshot with one run and restores it for two
// more: each restored run must start from the saved kernel (no boot on its
// console), see a fresh random seed and the host's clock, and carry nothing
// of the run before it.
func TestSnapshotRestore(t *testing.T) {
	e := newFaultEnv(t)
	e.snaps = NewSnapshots(t.TempDir(), false)
	ctx := context.Background()
	type seen struct {
		random string
		skew   float64
		locks  string
	}
	got := map[int]*seen{}
	var index int
	r := e.runner(t)
	r.BeforePhase = func(ctx context.Context, phase string, m *vm.Machine) error {
		switch phase {
		case "setup":
			s := &seen{}
			got[index] = s
			before := time.Now()
			out, err := m.Output(ctx, "date +%s.%N; head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n'; echo; grep -h debug_locks: /proc/lockdep_stats")
			after := time.Now()
			if err != nil {
				return err
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			if len(lines) != 3 {
				t.Fatalf("run %d: guest said %q", index, out)
			}
			guest, err := strconv.ParseFloat(lines[0], 64)
			if err != nil {
				t.Fatalf("run %d: guest date %q: %v", index, lines[0], err)
			}
			mid := float64(before.UnixNano()+after.UnixNano()) / 2e9
			s.skew, s.random, s.locks = guest-mid, lines[1], strings.Join(strings.Fields(lines[2]), " ")
		case "workload":
			_, err := m.Output(ctx, "echo patchbay-test-marker-run-"+strconv.Itoa(index)+" > /dev/kmsg")
			return err
		}
		return nil
	}
	var recs []*record.RunRecord
	for index = 0; index < 3; index++ {
		rec, err := r.RunOne(ctx, "eopnotsupp", index, uint64(index+1), e.k)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("run %d: %s, start %s, %.1fs to ready, %.1fs in all; %+v", index, rec.Outcome, rec.Start, rec.BootSecs, rec.Seconds, *got[index])
		if rec.Outcome != record.Pass {
			t.Fatalf("run %d: %s %v", index, rec.Outcome, rec.Reasons)
		}
		recs = append(recs, rec)
	}
	if recs[0].Start != StartSnapshot || recs[1].Start != StartRestore || recs[2].Start != StartRestore {
		t.Fatalf("starts %s %s %s, want snapshot restore restore", recs[0].Start, recs[1].Start, recs[2].Start)
	}
	if recs[1].Snapshot != recs[0].Snapshot || recs[2].Snapshot != recs[0].Snapshot {
		t.Errorf("snapshot keys %s %s %s differ", recs[0].Snapshot, recs[1].Snapshot, recs[2].Snapshot)
	}
	for i := 1; i < 3; i++ {
		if got[i].random == got[i-1].random || len(got[i].random) != 32 {
			t.Errorf("run %d read %q from /dev/urandom, run %d %q", i, got[i].random, i-1, got[i-1].random)
		}
		if math.Abs(got[i].skew) > 1 {
			t.Errorf("run %d: guest clock %.3fs off the host's", i, got[i].skew)
		}
		if got[i].locks != "debug_locks: 1" {
			t.Errorf("run %d starts with lockdep %q, want debug_locks: 1", i, got[i].locks)
		}
	}
	consoles := make([][]byte, 3)
	for i, rec := range recs {
		var err error
		consoles[i], err = os.ReadFile(filepath.Join(e.result, rec.Dir, "console.log"))
		if err != nil {
			t.Fatal(err)
		}
	}
	// The run that saved the snapshot booted; restored ones did not, and
	// hold only their own output.
	if !bytes.Contains(consoles[0], []byte("Linux version")) {
		t.Errorf("run 0 console has no boot")
	}
	for i := 1; i < 3; i++ {
		c := consoles[i]
		if bytes.Contains(c, []byte("Linux version")) {
			t.Errorf("run %d console has a boot: not restored", i)
		}
		if n := bytes.Count(c, []byte("patchbay: phase setup")); n != 1 {
			t.Errorf("run %d console has %d setup phases, want 1", i, n)
		}
		for j := 0; j < 3; j++ {
			has := bytes.Contains(c, []byte("patchbay-test-marker-run-"+strconv.Itoa(j)))
			if has != (i == j) {
				t.Errorf("run %d console has run %d's marker: %v", i, j, has)
			}
		}
	}
	if left, _ := filepath.Glob(filepath.Join(e.snaps.Dir, "*.tmp")); len(left) > 0 {
		t.Errorf("half-made snapshots left: %v", left)
	}

	// Without a BeforePhase hook the refresh and the setup and verify
	// markers ride in the phases' first batches: the clock must be the
	// host's all the same (the writers stamp their start with the guest's
	// clock; the snapshot was saved minutes ago) and each phase marked once,
	// in order.
	r.BeforePhase = nil
	index = 5
	rec, err := r.RunOne(ctx, "eopnotsupp", index, uint64(index+1), e.k)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Outcome != record.Pass || rec.Start != StartRestore {
		t.Fatalf("run without a hook: %s, start %s %v", rec.Outcome, rec.Start, rec.Reasons)
	}
	from, to := float64(rec.Started.UnixNano())/1e9, float64(rec.Started.UnixNano())/1e9+rec.Seconds
	for _, w := range rec.Writers {
		if w.PerSecond == nil {
			t.Fatalf("writer %d has no per-second series", w.ID)
		}
		if at := w.PerSecond.StartUnix; at < from-1 || at > to+1 {
			t.Errorf("writer %d started at guest time %.3f, outside the run's host time [%.3f, %.3f]: the clock was not refreshed", w.ID, at, from, to)
		}
	}
	c, err := os.ReadFile(filepath.Join(e.result, rec.Dir, "console.log"))
	if err != nil {
		t.Fatal(err)
	}
	last := -1
	for _, p := range []string{"setup", "workload", "verify"} {
		m := []byte("patchbay: phase " + p)
		if n := bytes.Count(c, m); n != 1 {
			t.Errorf("run without a hook: %d %q markers on the console, want 1", n, p)
		}
		if i := bytes.Index(c, m); i < last {
			t.Errorf("run without a hook: phase %s marked before the phase before it", p)
		} else {
			last = i
		}
	}

	// A state QEMU cannot load: the runs boot cold, and say so once.
	state := filepath.Join(e.snaps.Dir, recs[0].Snapshot, "state")
	os.Chmod(state, 0o644)
	if err := os.Truncate(state, 4096); err != nil {
		t.Fatal(err)
	}
	var progress bytes.Buffer
	r.Progress = io.MultiWriter(&progress, testWriter{t})
	for index = 3; index < 5; index++ {
		rec, err := r.RunOne(ctx, "eopnotsupp", index, uint64(index+1), e.k)
		if err != nil {
			t.Fatal(err)
		}
		if rec.Outcome != record.Pass || rec.Start != StartCold {
			t.Fatalf("run %d from a broken snapshot: %s, start %s %v", index, rec.Outcome, rec.Start, rec.Reasons)
		}
	}
	if n := strings.Count(progress.String(), "restoring it failed"); n != 1 {
		t.Errorf("the failed restore was said %d times, want once:\n%s", n, progress.String())
	}
}
