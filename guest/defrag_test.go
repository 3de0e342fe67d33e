package guest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// requireExt4 skips tests that need ext4-only ioctls on the host's temp dir.
func requireExt4(t *testing.T, dir string) {
	t.Helper()
	ok, err := IsExt4(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		t.Skipf("temp dir %s is not ext4: FS_JOURNAL_DATA_FL and EXT4_IOC_MOVE_EXT need ext4 (point TMPDIR at an ext4 directory to run this)", dir)
	}
}

func verifyAllOK(t *testing.T, l Layout, exp [][]int64) {
	t.Helper()
	v, err := Verify(VerifyConfig{Layout: l, Phase: "after-defrag", Expected: exp, Mmap: true, MaxReport: 20})
	if err != nil {
		t.Fatal(err)
	}
	if v.BadTotal != 0 {
		t.Fatalf("verify after defrag: %d bad: %+v", v.BadTotal, v.Bad)
	}
}

func TestDefragRejectsForeignDonorDir(t *testing.T) {
	l := testLayout(t, 1)
	if _, err := Prepare(l, false); err != nil {
		t.Fatal(err)
	}
	var a, b unix.Stat_t
	if err := unix.Stat(l.Dir, &a); err != nil {
		t.Fatal(err)
	}
	if err := unix.Stat("/proc", &b); err != nil || a.Dev == b.Dev {
		t.Skip("no second file system to test against")
	}
	_, err := Defrag(context.Background(), DefragConfig{Layout: l, DonorDir: "/proc", Duration: time.Second, RangeBlocks: 4})
	if err == nil {
		t.Fatal("donor dir on another file system accepted")
	}
}

func TestDefragMovesExtents(t *testing.T) {
	l := testLayout(t, 1)
	requireExt4(t, l.Dir)
	if _, err := Prepare(l, false); err != nil {
		t.Fatal(err)
	}
	rep, err := Defrag(context.Background(), DefragConfig{Layout: l, Duration: 500 * time.Millisecond, RangeBlocks: 4, ReopenOneIn: 4, BusyRetries: 32})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("defrag: %+v", rep)
	if rep.Results["moved"] == 0 || rep.BlocksMoved == 0 || rep.Reopens == 0 {
		t.Fatalf("no extents moved: %+v", rep)
	}
	if rep.Transitions != 0 {
		t.Fatalf("transitions %d without the journal flag", rep.Transitions)
	}
	verifyAllOK(t, l, nil)
}

func TestDefragJournalData(t *testing.T) {
	l := testLayout(t, 1)
	requireExt4(t, l.Dir)
	if _, err := Prepare(l, true); err != nil {
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EOPNOTSUPP) {
			t.Skipf("cannot set FS_JOURNAL_DATA_FL here (needs CAP_SYS_RESOURCE on ext4): %v", err)
		}
		t.Fatal(err)
	}
	rep, err := Defrag(context.Background(), DefragConfig{Layout: l, Duration: 500 * time.Millisecond, RangeBlocks: 4, Rejournal: true, BusyRetries: 32})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("defrag: %+v", rep)
	if rep.Attempts == 0 {
		t.Fatal("no attempts")
	}
	// A stock kernel refuses (EOPNOTSUPP); a fallback kernel moves and each
	// move on a +j inode is a transition that rejournal then undoes.
	if rep.Results["EOPNOTSUPP"] == 0 && rep.Transitions == 0 {
		t.Fatalf("neither EOPNOTSUPP nor transitions: %+v", rep)
	}
	verifyAllOK(t, l, nil)
}

func TestDefragConcurrentWithWriters(t *testing.T) {
	l := testLayout(t, 2)
	requireExt4(t, l.Dir)
	if _, err := Prepare(l, false); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var (
		wg   sync.WaitGroup
		reps [2]WriteReport
		errs [3]error
		drep DefragReport
	)
	wg.Go(func() {
		reps[0], errs[0] = Write(ctx, WriteConfig{Layout: l, Mode: ModeMmap, ID: 0, Duration: time.Second, MsyncEvery: 20, DontneedOneIn: 8})
	})
	wg.Go(func() {
		reps[1], errs[1] = Write(ctx, WriteConfig{Layout: l, Mode: ModePwrite, ID: 1, Duration: time.Second, FsyncEvery: 50})
	})
	wg.Go(func() {
		drep, errs[2] = Defrag(ctx, DefragConfig{Layout: l, Duration: time.Second, RangeBlocks: 8, ReopenOneIn: 16, BusyRetries: 32})
	})
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("defrag: attempts %d results %v blocks %d", drep.Attempts, drep.Results, drep.BlocksMoved)
	exp := l.NewGens(0)
	for _, r := range reps {
		if len(r.Errors) != 0 {
			t.Fatalf("writer %d errors: %v", r.ID, r.Errors)
		}
		if err := MergeExpected(exp, r.Gens); err != nil {
			t.Fatal(err)
		}
	}
	verifyAllOK(t, l, exp)
}
