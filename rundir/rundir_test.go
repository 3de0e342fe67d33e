package rundir

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestLoadRefusesWhatIsNotARun(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(dir, ""); err == nil || !strings.Contains(err.Error(), "not a run folder") {
		t.Errorf("empty folder: %v", err)
	}
	// A FIFO named run.json must fail at once, not block on open.
	fifo := filepath.Join(dir, "run.json")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Skip(err)
	}
	if _, err := Load(dir, ""); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("fifo: %v", err)
	}
	os.Remove(fifo)
	os.WriteFile(fifo, []byte(`{"case":"c"}`), 0o644)
	if _, err := Load(dir, ""); err == nil || !strings.Contains(err.Error(), "no case or variant") {
		t.Errorf("no variant: %v", err)
	}
	os.WriteFile(fifo, []byte(`{"case":"c","variant":"v","dir":"v/0"}`), 0o644)
	if _, err := Load(dir, ""); err == nil || !strings.Contains(err.Error(), "results directory") {
		t.Errorf("no summary: %v", err)
	}
}

func TestResultsDirOf(t *testing.T) {
	for _, tc := range []struct{ dir, rel, want string }{
		{"/r/case/ts/stock/3", "stock/3", "/r/case/ts"},
		{"/r/case/ts/stock/3/", "stock/3", "/r/case/ts"},
		{"stock/3", "stock/3", "."},
		{"/x/y/copied", "stock/3", "/x"},
		{"/r/a/b", "../../etc", "/r"},
	} {
		if got := ResultsDirOf(tc.dir, tc.rel); got != tc.want {
			t.Errorf("ResultsDirOf(%q, %q) = %q, want %q", tc.dir, tc.rel, got, tc.want)
		}
	}
}
