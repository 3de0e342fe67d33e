package harness

import (
	"bytes"
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// fixture reads a real console log from triage's test data, without its
// TITLE:/KIND: header lines.
func fixture(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile("../triage/testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		if !strings.HasPrefix(l, "TITLE:") && !strings.HasPrefix(l, "KIND:") && !strings.HasPrefix(l, "CORRUPTED:") {
			out = append(out, l)
		}
	}
	return []byte(strings.Join(out, "\n"))
}

func TestHangEvidence(t *testing.T) {
	for name, want := range map[string]bool{
		"hung_task.txt":             true,
		"rcu_stall.txt":             true,
		"lockdep_circular_ext4.txt": true,
		"soft_lockup_lkdtm.txt":     true,
		"clean_boot.txt":            false,
		"warning_move_extents.txt":  false,
	} {
		if got := hangEvidence(fixture(t, name)); (got != "") != want {
			t.Errorf("%s: evidence %q, want some: %v", name, got, want)
		}
	}
}

// stream is a console that grows while the watcher polls it.
type stream struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *stream) write(b []byte) { s.mu.Lock(); s.buf.Write(b); s.mu.Unlock() }
func (s *stream) bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]byte(nil), s.buf.Bytes()...)
}

// TestWatchHang: at the seam between the console stream and the
// workload's wait, with a console fed the real hung-task log mid-run.
func TestWatchHang(t *testing.T) {
	hungLog := fixture(t, "hung_task.txt")
	run := func(before, during []byte, notBefore time.Duration) (string, time.Duration) {
		s := &stream{}
		s.write(before)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		start := time.Now()
		var why string
		done := make(chan struct{})
		go func() {
			watchHang(ctx, s.bytes, len(before), start.Add(notBefore), 200*time.Millisecond, 10*time.Millisecond, func(r string) { why = r })
			close(done)
		}()
		time.Sleep(50 * time.Millisecond)
		s.write(during)
		<-done
		return why, time.Since(start)
	}
	why, took := run(fixture(t, "clean_boot.txt"), hungLog, 300*time.Millisecond)
	if !strings.Contains(why, "INFO: task hung in") {
		t.Errorf("hung task during the workload: stop reason %q", why)
	}
	// Not before the workload's own end plus the grace.
	if took < 500*time.Millisecond || took > 1500*time.Millisecond {
		t.Errorf("stopped after %v, want about 300 ms + 200 ms", took)
	}
	if why, _ := run(hungLog, fixture(t, "clean_boot.txt"), 0); why != "" {
		t.Errorf("a hang reported before the workload started stopped it: %q", why)
	}
	if why, _ := run(nil, fixture(t, "warning_move_extents.txt"), 0); why != "" {
		t.Errorf("a WARNING alone stopped the workload: %q", why)
	}
}
