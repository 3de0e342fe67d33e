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
)

// TestFioWorkloadEndToEnd runs the fio peer workload of the seeded-bugs
// case for real (fio image, stock and lost-dirty kernels, QEMU, SSH): stock
// must pass with moves and three clean fio verify passes; the seeded
// lost-dirty bug must fail, with bad blocks in fio's verify after
// drop_caches.
func TestFioWorkloadEndToEnd(t *testing.T) {
	if os.Getenv("PATCHBAY_E2E") == "" {
		t.Skip("set PATCHBAY_E2E=1 (make test does): builds kernels and a fio guest image, boots QEMU")
	}
	c, err := harness.LoadCase("testdata/seeded-bugs/fio.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Minute)
	defer cancel()
	sum, err := harness.RunCase(ctx, c, harness.Options{
		CacheDir: harness.DefaultCacheDir(), ResultsDir: t.TempDir(), Runs: 1, Seed: 100,
		Variants: []string{"stock", "lost-dirty"},
		Duration: 10 * time.Second, Accel: "auto", Progress: testLog{t},
	})
	if err != nil {
		t.Fatal(err)
	}
	runs := map[string]*record.RunRecord{}
	for _, v := range sum.Variants {
		if len(v.Runs) != 1 {
			t.Fatalf("variant %s: %d runs (build error %q)", v.Name, len(v.Runs), v.BuildError)
		}
		runs[v.Name] = v.Runs[0]
	}
	stock := runs["stock"]
	if stock.Outcome != record.Pass {
		t.Errorf("stock: %s %v, want pass", stock.Outcome, stock.Reasons)
	}
	if stock.Moved() == 0 || stock.Writes() == 0 || len(stock.Verify) != 3 || stock.Fsck == nil || !stock.Fsck.Clean {
		t.Errorf("stock: moved %d, writes %d, verify %+v, fsck %+v", stock.Moved(), stock.Writes(), stock.Verify, stock.Fsck)
	}
	for _, f := range []string{"fio-workload.json", "fio-workload.txt", "fio-verify-dropcache.json", "fio-job.fio", "workload.json", "verify.json", "fsck.txt"} {
		if st, err := os.Stat(filepath.Join(sum.Dir, stock.Dir, f)); err != nil || (st.Size() == 0 && !strings.HasSuffix(f, ".txt")) {
			t.Errorf("stock: %s missing or empty: %v", f, err)
		}
	}
	bug := runs["lost-dirty"]
	if bug.Outcome != record.Fail {
		t.Fatalf("lost-dirty: %s %v, want fail", bug.Outcome, bug.Reasons)
	}
	// After drop_caches every moved block is read from its new location,
	// which never got the data.
	if len(bug.Verify) < 2 || bug.Verify[1].Phase != "dropcache" || bug.Verify[1].BadTotal == 0 {
		t.Errorf("lost-dirty: verify %+v: want bad blocks after drop_caches (%v)", bug.Verify, bug.Reasons)
	}
}
