package harness

import (
	"context"
	"os"
	"testing"
	"time"

	"patchbay/bisect"
	"patchbay/record"
)

// TestBisectEndToEnd bisects a real stack on real kernels: three comments
// around the seeded lost-dirty bug (patch 3 of 4). Each step runs the
// workload until the SPRT decides; the culprit must be patch 3.
func TestBisectEndToEnd(t *testing.T) {
	if os.Getenv("PATCHBAY_E2E") == "" {
		t.Skip("set PATCHBAY_E2E=1 (make test does): builds kernels and boots QEMU")
	}
	c, err := LoadCase("testdata/bisect/case.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	guestBin, err := ensureGuest(ctx, Options{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	o, err := NewBisectOracle(ctx, c, "stack", Options{
		CacheDir: DefaultCacheDir(), ResultsDir: t.TempDir(), Seed: 11, GuestBin: guestBin,
		Accel: "tcg", Duration: 15 * time.Second, Progress: testWriter{t},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(o.Stack) != 4 {
		t.Fatalf("stack %v, want 4 patches", o.Stack)
	}
	res, err := bisect.Search(ctx, o, bisect.DefaultSPRT(), 0, 4, false, 2)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range res.Steps {
		t.Logf("prefix %d: %d runs, %d failed: %s", s.Prefix, s.Runs, s.Fails, s.Decision)
	}
	if res.Culprit != 3 {
		t.Fatalf("culprit %d, want 3 (lost-dirty)", res.Culprit)
	}
	t.Logf("culprit #3 with confidence >= %.2f; evidence in %s", res.Confidence, o.Dir())
	// Harmless prefixes never fail (a bad one may pass now and then).
	for n, recs := range o.Records {
		for _, r := range recs {
			if n < 3 && r.Outcome != record.Pass {
				t.Errorf("prefix %d run %d: %s %v", n, r.Index, r.Outcome, r.Reasons)
			}
		}
	}
}
