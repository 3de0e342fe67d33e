package harness_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"patchbay/harness"
	"patchbay/record"
	"patchbay/report"
)

// testLog forwards progress lines to the test log.
type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestEndToEnd builds both kernels of the shipped case (cached outside the
// repository), boots each in QEMU, runs a short workload over SSH and checks
// the real results: the stock kernel refuses with EOPNOTSUPP and loses
// nothing; the fallback kernel moves extents and swaps a_ops.
func TestEndToEnd(t *testing.T) {
	if os.Getenv("PATCHBAY_E2E") == "" {
		t.Skip("set PATCHBAY_E2E=1 (make test does): builds kernels and boots QEMU")
	}
	c, err := harness.LoadCase("../cases/ext4-journal-defrag")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 75*time.Minute)
	defer cancel()
	results := t.TempDir()
	sum, err := harness.RunCase(ctx, c, harness.Options{
		CacheDir: harness.DefaultCacheDir(), ResultsDir: results, Runs: 1, Seed: 42,
		Variants: []string{"eopnotsupp", "fallback"},
		Duration: 10 * time.Second, Accel: "auto", Progress: testLog{t},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := report.Write(sum.Dir, sum); err != nil {
		t.Fatal(err)
	}
	md := report.Markdown(sum)
	t.Log("\n" + md)

	byName := map[string]*record.VariantSummary{}
	for i := range sum.Variants {
		byName[sum.Variants[i].Name] = &sum.Variants[i]
	}
	for _, name := range []string{"eopnotsupp", "fallback"} {
		v := byName[name]
		if v == nil || v.Kernel == nil || len(v.Runs) != 1 {
			t.Fatalf("variant %s: no kernel or no run: %+v", name, v)
		}
		r := v.Runs[0]
		switch r.Outcome {
		case record.InfraError, record.BootError, record.Interrupted:
			t.Fatalf("%s: outcome %s: %v", name, r.Outcome, r.Reasons)
		}
		if r.JournalDataFiles != c.Workload.Files {
			t.Errorf("%s: +j on %d of %d files", name, r.JournalDataFiles, c.Workload.Files)
		}
		if r.Writes() == 0 {
			t.Errorf("%s: no block writes", name)
		}
		for _, f := range []string{"console.log", "dmesg.txt", "workload.json", "verify.json", "fsck.txt", "findings.json", "run.json", "qemu.log"} {
			if st, err := os.Stat(filepath.Join(sum.Dir, r.Dir, f)); err != nil || st.Size() == 0 {
				t.Errorf("%s: %s missing or empty: %v", name, f, err)
			}
		}
		if !strings.Contains(md, name) {
			t.Errorf("summary.md does not mention %s", name)
		}
	}
	stock := byName["eopnotsupp"].Runs[0]
	if stock.Outcome != record.Pass {
		t.Errorf("eopnotsupp: outcome %s, want pass: %v", stock.Outcome, stock.Reasons)
	}
	if stock.Refused("EOPNOTSUPP") == 0 || stock.Moved() != 0 {
		t.Errorf("eopnotsupp: refused %d, moved %d; want refusals > 0 and no moves", stock.Refused("EOPNOTSUPP"), stock.Moved())
	}
	if len(stock.Verify) != 3 || stock.BadBlocks() != 0 || stock.Fsck == nil || !stock.Fsck.Clean {
		t.Errorf("eopnotsupp: verify %+v fsck %+v: want 3 clean phases and a clean fsck", stock.Verify, stock.Fsck)
	}
	fb := byName["fallback"].Runs[0]
	if fb.Moved() == 0 || fb.Transitions() == 0 {
		t.Errorf("fallback: moved %d, transitions %d; want both > 0", fb.Moved(), fb.Transitions())
	}
	for _, f := range []string{"summary.json", "summary.md"} {
		if _, err := os.Stat(filepath.Join(sum.Dir, f)); err != nil {
			t.Error(err)
		}
	}
}
