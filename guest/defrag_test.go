package guest

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"patchbay/guest/internal/ext4test"
)

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
	l := ext4Layout(t, 1, "")
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
	if rep.FilesMoved < 1 || rep.FilesMoved > l.Files {
		t.Errorf("files moved %d, want 1..%d", rep.FilesMoved, l.Files)
	}
	verifyAllOK(t, l, nil)
}

func TestDefragJournalData(t *testing.T) {
	l := ext4Layout(t, 1, "")
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

// runBeside runs an mmap writer (id 0) and a pwrite writer (id 1, set up
// by pwriteSync) for a second beside Defrag with cfg, and returns the defrag
// report and the generations the writers completed.
func runBeside(t *testing.T, l Layout, pwriteSync func(*WriteConfig), cfg DefragConfig) (DefragReport, [][]int64) {
	t.Helper()
	ctx := context.Background()
	var (
		wg   sync.WaitGroup
		reps [2]WriteReport
		errs [3]error
		drep DefragReport
	)
	pw := WriteConfig{Layout: l, Mode: ModePwrite, ID: 1, Duration: time.Second}
	pwriteSync(&pw)
	wg.Go(func() {
		reps[0], errs[0] = Write(ctx, WriteConfig{Layout: l, Mode: ModeMmap, ID: 0, Duration: time.Second, MsyncEvery: 20, DontneedOneIn: 8})
	})
	wg.Go(func() { reps[1], errs[1] = Write(ctx, pw) })
	wg.Go(func() { drep, errs[2] = Defrag(ctx, cfg) })
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	exp := l.NewGens(0)
	for _, r := range reps {
		if len(r.Errors) != 0 {
			t.Fatalf("writer %d errors: %v", r.ID, r.Errors)
		}
		if err := MergeExpected(exp, r.Gens); err != nil {
			t.Fatal(err)
		}
	}
	return drep, exp
}

func TestDefragConcurrentWithWriters(t *testing.T) {
	l := ext4Layout(t, 2, "")
	if _, err := Prepare(l, false); err != nil {
		t.Fatal(err)
	}
	drep, exp := runBeside(t, l, func(c *WriteConfig) { c.FsyncEvery = 50 },
		DefragConfig{Layout: l, Duration: time.Second, RangeBlocks: 8, ReopenOneIn: 16, BusyRetries: 32})
	t.Logf("defrag: attempts %d results %v blocks %d", drep.Attempts, drep.Results, drep.BlocksMoved)
	verifyAllOK(t, l, exp)
}

// donorLeftovers lists donor files left in dir.
func donorLeftovers(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "pbdonor-*"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestDefragDonorStrategies runs every donor strategy against an mmap and
// a pwrite writer on a loop-mounted ext4 and checks that extents moved,
// nothing was lost and no donor was left behind.
func TestDefragDonorStrategies(t *testing.T) {
	for _, donor := range []string{DonorFresh, DonorShared, DonorInplace} {
		t.Run(donor, func(t *testing.T) {
			l := ext4Layout(t, 2, "")
			if _, err := Prepare(l, false); err != nil {
				t.Fatal(err)
			}
			drep, exp := runBeside(t, l, func(c *WriteConfig) { c.FdatasyncEvery = 50 },
				DefragConfig{Layout: l, Donor: donor, Duration: time.Second, RangeBlocks: 4, ReopenOneIn: 16, BusyRetries: 32})
			t.Logf("%s: attempts %d results %v blocks %d refallocs %d moves/s %.0f setup %v",
				donor, drep.Attempts, drep.Results, drep.BlocksMoved, drep.DonorRefallocs, drep.MovesPerS, drep.SetupErrors)
			if drep.Donor != donor {
				t.Fatalf("report donor %q, want %q", drep.Donor, donor)
			}
			if drep.Results["moved"] == 0 || drep.BlocksMoved == 0 {
				t.Fatalf("no extents moved: %+v", drep)
			}
			if len(drep.SetupErrors) != 0 {
				t.Fatalf("setup errors: %v %v", drep.SetupErrors, drep.Errors)
			}
			if want := float64(drep.Results["moved"]) / drep.ElapsedS; drep.MovesPerS != want || drep.AttemptsPerS < drep.MovesPerS {
				t.Fatalf("moves_per_s %v attempts_per_s %v, want %v and more", drep.MovesPerS, drep.AttemptsPerS, want)
			}
			// Every orig range is allocated (prepare wrote every block), so
			// the blocks a move leaves in the shared donor cover the range.
			if drep.DonorRefallocs != 0 {
				t.Fatalf("donor_refallocs %d with fully allocated origs", drep.DonorRefallocs)
			}
			if left := donorLeftovers(t, l.Dir); len(left) != 0 {
				t.Fatalf("donor files left behind: %v", left)
			}
			verifyAllOK(t, l, exp)
		})
	}
}

// TestDefragDonorDataJournal: with data=journal every MOVE_EXT is refused
// with EOPNOTSUPP on a stock kernel, whatever the donor strategy.
func TestDefragDonorDataJournal(t *testing.T) {
	for _, donor := range []string{DonorFresh, DonorShared, DonorInplace} {
		t.Run(donor, func(t *testing.T) {
			l := ext4Layout(t, 1, "data=journal")
			if _, err := Prepare(l, false); err != nil {
				t.Fatal(err)
			}
			rep, err := Defrag(context.Background(), DefragConfig{Layout: l, Donor: donor, Duration: 200 * time.Millisecond, RangeBlocks: 4})
			if err != nil {
				t.Fatal(err)
			}
			if rep.Attempts == 0 || rep.Results["EOPNOTSUPP"] != int(rep.Attempts) || rep.Results["moved"] != 0 || rep.BlocksMoved != 0 {
				t.Fatalf("data=journal: want every attempt EOPNOTSUPP: %+v", rep)
			}
			if len(rep.SetupErrors) != 0 {
				t.Fatalf("setup errors: %v %v", rep.SetupErrors, rep.Errors)
			}
			verifyAllOK(t, l, nil)
		})
	}
}

func TestDefragRejectsUnknownDonor(t *testing.T) {
	l := testLayout(t, 1)
	if _, err := Prepare(l, false); err != nil {
		t.Fatal(err)
	}
	_, err := Defrag(context.Background(), DefragConfig{Layout: l, Donor: "bogus", Duration: time.Second, RangeBlocks: 4})
	if err == nil || !strings.Contains(err.Error(), "--donor") {
		t.Fatalf("unknown donor strategy: err %v", err)
	}
}

// TestSharedDonorRefalloc punches a hole into the shared donor and checks
// that the next attempt on that range finds it and fallocates again.
func TestSharedDonorRefalloc(t *testing.T) {
	l := ext4Layout(t, 1, "")
	if _, err := Prepare(l, false); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Open(l.Path(0), unix.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	rep := DefragReport{SetupErrors: map[string]int{}}
	d := &defragger{cfg: DefragConfig{Layout: l, DonorDir: l.Dir, Donor: DonorShared}, fds: []int{fd}, rep: &rep, fsbs: st.Blksize, donorFD: -1}
	if err := d.openLongDonor(); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(d.donorFD)
	if left := donorLeftovers(t, l.Dir); len(left) != 0 {
		t.Fatalf("shared donor not unlinked: %v", left)
	}
	size := l.FileSize()
	if got, err := AllocatedBytes(d.donorFD, 0, size); err != nil || got != size {
		t.Fatalf("fresh shared donor has %d of %d bytes allocated: %v", got, size, err)
	}
	if err := d.ensureDonorRange(4, 4); err != nil || rep.DonorRefallocs != 0 {
		t.Fatalf("allocated range: err %v refallocs %d", err, rep.DonorRefallocs)
	}
	bs := d.fsbs
	if err := unix.Fallocate(d.donorFD, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 5*bs, bs); err != nil {
		t.Fatal(err)
	}
	if got, _ := AllocatedBytes(d.donorFD, 4*bs, 4*bs); got != 3*bs {
		t.Fatalf("after punching one block: %d bytes allocated, want %d", got, 3*bs)
	}
	if err := d.ensureDonorRange(4, 4); err != nil || rep.DonorRefallocs != 1 {
		t.Fatalf("holed range: err %v refallocs %d, want 1", err, rep.DonorRefallocs)
	}
	if got, _ := AllocatedBytes(d.donorFD, 4*bs, 4*bs); got != 4*bs {
		t.Fatalf("after refalloc: %d bytes allocated, want %d", got, 4*bs)
	}
	// A range past the donor's end is a hole too, and fallocate grows it.
	if err := d.ensureDonorRange(size/bs, 4); err != nil || rep.DonorRefallocs != 2 {
		t.Fatalf("range past EOF: err %v refallocs %d, want 2", err, rep.DonorRefallocs)
	}
}

// TestAllocatedBytes checks the FIEMAP walk against fallocate, punched
// holes, written data and ranges straddling extents.
func TestAllocatedBytes(t *testing.T) {
	dir := ext4test.Mount(t, "")
	fd, err := unix.Open(filepath.Join(dir, "f"), unix.O_CREAT|unix.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	const k = 4096
	if err := unix.Fallocate(fd, 0, 0, 64*k); err != nil {
		t.Fatal(err)
	}
	// Punch every other block: 32 extents, more than one FIEMAP batch.
	for b := int64(1); b < 64; b += 2 {
		if err := unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, b*k, k); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := unix.Pwrite(fd, make([]byte, 2*k), 100*k); err != nil {
		t.Fatal(err)
	}
	if err := unix.Fsync(fd); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ off, n, want int64 }{
		{0, 64 * k, 32 * k},
		{0, k, k},
		{k, k, 0},
		{k / 2, 2 * k, k},
		{64 * k, 36 * k, 0},
		{99 * k, 4 * k, 2 * k},
		{0, 200 * k, 34 * k},
	} {
		got, err := AllocatedBytes(fd, c.off, c.n)
		if err != nil || got != c.want {
			t.Errorf("AllocatedBytes(%d, %d) = %d, %v; want %d", c.off, c.n, got, err, c.want)
		}
	}
}

// With --evict-one-in the worker drops the range's cached pages before
// moving, so moves read uncached blocks; the data must still verify.
func TestDefragEvictsBeforeMoving(t *testing.T) {
	l := ext4Layout(t, 1, "")
	if _, err := Prepare(l, false); err != nil {
		t.Fatal(err)
	}
	rep, err := Defrag(context.Background(), DefragConfig{Layout: l, Duration: 500 * time.Millisecond, RangeBlocks: 4, EvictOneIn: 2, BusyRetries: 32})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Evictions == 0 || rep.Evictions >= rep.Attempts || rep.Results["moved"] == 0 {
		t.Fatalf("evictions %d of %d attempts, %d moved: want some, not all", rep.Evictions, rep.Attempts, rep.Results["moved"])
	}
	if len(rep.SetupErrors) != 0 {
		t.Errorf("setup errors %v", rep.SetupErrors)
	}
	verifyAllOK(t, l, nil)
	if _, err := Defrag(context.Background(), DefragConfig{Layout: l, Duration: time.Millisecond, RangeBlocks: 4, EvictOneIn: -1}); err == nil {
		t.Error("--evict-one-in -1 accepted")
	}
}

func TestEpochs(t *testing.T) {
	e := Epochs{N: 4, Files: 10, Duration: 20 * time.Second}
	for _, tc := range []struct {
		at   time.Duration
		want int
	}{{0, 0}, {4999 * time.Millisecond, 0}, {5 * time.Second, 1}, {19 * time.Second, 3}, {25 * time.Second, 3}} {
		if got := e.At(tc.at); got != tc.want {
			t.Errorf("At(%s) = %d, want %d", tc.at, got, tc.want)
		}
	}
	covered := 0
	for i := 0; i < e.N; i++ {
		lo, hi := e.FileRange(i)
		if lo != covered || hi <= lo {
			t.Errorf("epoch %d: files [%d, %d), want to start at %d and be non-empty", i, lo, hi, covered)
		}
		covered = hi
	}
	if covered != e.Files {
		t.Errorf("epochs cover %d of %d files", covered, e.Files)
	}
	if lo, hi := (Epochs{N: 1, Files: 3}).FileRange(0); lo != 0 || hi != 3 || (Epochs{N: 1}).At(time.Hour) != 0 {
		t.Error("one epoch is not every file all the time")
	}
}

// epochsRun is long enough that each of two epochs sees a move succeed on a
// loaded host (at 600 ms, 300 ms epochs, a load of 4 left a file unmoved).
const epochsRun = 3 * time.Second

// With epochs the writers and the defrag worker move on to fresh files in
// turn: every file is written and moved, and the data still verifies.
func TestWriteAndDefragByEpochs(t *testing.T) {
	l := ext4Layout(t, 1, "")
	if _, err := Prepare(l, false); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	var wrep WriteReport
	var werr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		wrep, werr = Write(ctx, WriteConfig{Layout: l, Mode: ModePwrite, ID: 0, Duration: epochsRun, Epochs: 2})
	}()
	drep, err := Defrag(ctx, DefragConfig{Layout: l, Duration: epochsRun, RangeBlocks: 4, BusyRetries: 32, Epochs: 2})
	wg.Wait()
	if err != nil || werr != nil {
		t.Fatal(err, werr)
	}
	for f := range wrep.Gens {
		written := false
		for _, g := range wrep.Gens[f] {
			written = written || g > 0
		}
		if !written {
			t.Errorf("file %d never written", f)
		}
	}
	if drep.FilesMoved != l.Files {
		t.Errorf("files moved %d of %d", drep.FilesMoved, l.Files)
	}
	if _, err := Write(ctx, WriteConfig{Layout: l, Mode: ModePwrite, Duration: time.Millisecond, Epochs: l.Files + 1}); err == nil {
		t.Error("more epochs than files accepted")
	}
	verifyAllOK(t, l, wrep.Gens)
}
