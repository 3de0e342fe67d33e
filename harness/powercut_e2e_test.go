package harness

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"patchbay/record"
)

// TestPowerCutEndToEnd cuts real VMs under load: on stock 6.12 every block
// acknowledged by fsync/msync survives the cut and the journal replay and
// e2fsck is clean; with the seeded lost fsync (ext4_sync_file returns 0
// without syncing) acknowledged blocks come back older and the run fails.
func TestPowerCutEndToEnd(t *testing.T) {
	if os.Getenv("PATCHBAY_E2E") == "" {
		t.Skip("set PATCHBAY_E2E=1 (make test does): builds kernels and boots QEMU")
	}
	c, err := LoadCase("testdata/seeded-bugs/power-cut.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	// A private guest binary: the shared cache's copy is rebuilt by every
	// session from its own tree.
	guestBin, err := ensureGuest(ctx, Options{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	sum, err := RunCase(ctx, c, Options{
		CacheDir: DefaultCacheDir(), ResultsDir: t.TempDir(), Runs: 1, Seed: 7, GuestBin: guestBin,
		Variants: []string{"stock", "lost-fsync"}, Accel: "tcg", Progress: testWriter{t},
	})
	if err != nil {
		t.Fatal(err)
	}
	runs := map[string]*record.RunRecord{}
	for i := range sum.Variants {
		v := &sum.Variants[i]
		if len(v.Runs) != 1 {
			t.Fatalf("%s: %d runs", v.Name, len(v.Runs))
		}
		runs[v.Name] = v.Runs[0]
	}
	for name, r := range runs {
		pc := r.PowerCut
		if pc == nil || pc.CutS < pc.AfterS || pc.AckRecords == 0 || pc.AckedBlocks == 0 || !pc.JournalRecovered {
			t.Errorf("%s: power cut %+v: want a cut after the seeded moment, acknowledgements and a journal recovery", name, pc)
		}
		if len(r.Verify) != 1 || r.Verify[0].Phase != "replay" || r.Fsck == nil {
			t.Errorf("%s: verify %+v, fsck %+v: want one replay pass and e2fsck", name, r.Verify, r.Fsck)
		}
		for _, f := range []string{"replay/console.log", "replay-dmesg.txt", "verify.json", "fsck.txt"} {
			if st, err := os.Stat(filepath.Join(sum.Dir, r.Dir, f)); err != nil || st.Size() == 0 {
				t.Errorf("%s: %s missing or empty: %v", name, f, err)
			}
		}
		// mount prints nothing when it succeeds: the file only has to be there.
		if _, err := os.Stat(filepath.Join(sum.Dir, r.Dir, "replay-mount.txt")); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if r := runs["stock"]; r.Outcome != record.Pass || r.BadBlocks() != 0 || !r.Fsck.Clean {
		t.Errorf("stock: %s %v, %d bad blocks: want a clean pass", r.Outcome, r.Reasons, r.BadBlocks())
	}
	if r := runs["lost-fsync"]; r.Outcome != record.Fail || len(r.Verify) != 1 || r.Verify[0].Counts["stale"] == 0 {
		t.Errorf("lost-fsync: %s %v: want a fail with stale acknowledged blocks", r.Outcome, r.Reasons)
	} else {
		t.Logf("lost-fsync: %d of %d acknowledged blocks older than acknowledged after the cut at %.1fs",
			r.Verify[0].Counts["stale"], r.PowerCut.AckedBlocks, r.PowerCut.CutS)
	}
}
