package guest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// Write modes.
const (
	ModeMmap   = "mmap"
	ModePwrite = "pwrite"
)

// WriteConfig configures one writer.
type WriteConfig struct {
	Layout
	Mode       string
	ID         int
	Duration   time.Duration
	MsyncEvery int // mmap mode: msync(MS_SYNC) the file every K writes; 0 = never
	FsyncEvery int // fsync the file every K writes; 0 = never
	// FdatasyncEvery: fdatasync the file every K writes; 0 = never.
	// Independent of FsyncEvery: when both fall on one write, fsync runs
	// first, then fdatasync.
	FdatasyncEvery int
	// mmap mode: after 1 in N writes also MADV_DONTNEED a random range so
	// clean pages fault again; 0 = never.
	DontneedOneIn int
	// CheckEvery K: after every K writes, pread one random block this
	// writer has written and compare it with the generation it wrote last.
	// Catches a write lost mid-run even if a later write would hide it
	// from the final verify. 0 = never.
	CheckEvery int
	// Epochs: write only the files of the current epoch (see Epochs);
	// 0 or 1 = every file all the time. Read-backs cover every file.
	Epochs int
	// AckDev: a raw disk where each successful fsync, fdatasync or msync
	// is recorded (see AckLog) for the check after a power cut; "" = none.
	AckDev string
}

// WriteReport is the JSON document printed by `pbguest write`.
type WriteReport struct {
	ID     int    `json:"id"`
	Mode   string `json:"mode"`
	Writes int64  `json:"writes"`
	// WritesPerS is writes / elapsed_s for this writer.
	WritesPerS float64 `json:"writes_per_s"`
	// FaultsHint is the whole process's minor+major fault delta over the
	// run (getrusage RUSAGE_SELF): only a hint with several workers.
	FaultsHint int64 `json:"faults_hint"`
	// FaultsThread is this writer's own minor+major fault delta: the write
	// loop runs locked to one OS thread and reads getrusage(RUSAGE_THREAD)
	// before and after. In mmap mode it is dominated by faults on the
	// shared mapping (first touch, after MADV_DONTNEED or reclaim, and the
	// write-protect fault that calls page_mkwrite once writeback cleaned a
	// page); a few come from the Go runtime touching fresh heap on that
	// thread. In pwrite mode it should stay near 0.
	FaultsThread int64     `json:"faults_thread"`
	FaultsPerS   float64   `json:"faults_per_s"`
	Dontneeds    int64     `json:"dontneeds,omitempty"`
	Msyncs       int64     `json:"msyncs,omitempty"`
	Fsyncs       int64     `json:"fsyncs,omitempty"`
	Fdatasyncs   int64     `json:"fdatasyncs,omitempty"`
	Acks         int64     `json:"acks,omitempty"` // syncs recorded on the ack disk
	Readbacks    int64     `json:"readbacks"`
	ReadbackBad  int64     `json:"readback_bad"`  // read-backs that did not return the last write
	BadReads     []string  `json:"bad_readbacks"` // the first few, with what was found
	Errors       []string  `json:"errors"`
	ErrorsTotal  int       `json:"errors_total"`
	ElapsedS     float64   `json:"elapsed_s"`
	Gens         [][]int64 `json:"gens"`
	// PerSecond counts writes and bad read-backs per second.
	PerSecond *Series `json:"per_second,omitempty"`
}

func (c WriteConfig) validate() error {
	if err := c.Layout.Validate(); err != nil {
		return err
	}
	switch {
	case c.Mode != ModeMmap && c.Mode != ModePwrite:
		return fmt.Errorf("--mode must be mmap or pwrite, got %q", c.Mode)
	case c.ID < 0 || c.ID >= c.Writers:
		return fmt.Errorf("--id must be in [0, %d), got %d", c.Writers, c.ID)
	case c.Duration <= 0:
		return fmt.Errorf("--duration must be > 0, got %s", c.Duration)
	case c.MsyncEvery < 0 || c.FsyncEvery < 0 || c.FdatasyncEvery < 0 || c.DontneedOneIn < 0 || c.CheckEvery < 0:
		return errors.New("--msync-every, --fsync-every, --fdatasync-every, --dontneed-one-in and --check-every must be >= 0")
	}
	if c.Epochs != 0 {
		return validateEpochs(c.Epochs, c.Files)
	}
	return nil
}

// writer holds the per-run state of one Write call.
type writer struct {
	cfg   WriteConfig
	fds   []int
	maps  [][]byte
	buf   []byte
	rbuf  []byte // read-back buffer
	rng   *RNG
	rep   *WriteReport
	errs  errList
	ts    *Series
	page  int
	owned []int
	// byEpoch[e]: the owned blocks in epoch e's files.
	byEpoch [][]int
	epochs  Epochs
	ack     *AckLog // nil unless AckDev is set
}

// Write rewrites random owned blocks with increasing generations until the
// duration ends or ctx is cancelled. Per-block write failures (EIO,
// SIGBUS, ...) are reported in the result, not returned as errors.
func Write(ctx context.Context, cfg WriteConfig) (WriteReport, error) {
	if err := cfg.validate(); err != nil {
		return WriteReport{}, err
	}
	fds, err := openFiles(cfg.Layout, unix.O_RDWR)
	if err != nil {
		return WriteReport{}, fmt.Errorf("write: %w", err)
	}
	defer closeAll(fds)

	rep := WriteReport{ID: cfg.ID, Mode: cfg.Mode, Gens: cfg.NewGens(-1), BadReads: []string{}}
	w := &writer{
		cfg:   cfg,
		fds:   fds,
		buf:   make([]byte, cfg.BlockSize),
		rbuf:  make([]byte, cfg.BlockSize),
		rng:   NewRNG(DeriveSeed(cfg.Seed, roleWrite, uint64(cfg.ID))),
		rep:   &rep,
		page:  os.Getpagesize(),
		owned: cfg.Owned(cfg.ID),
	}
	w.loadGens()
	if cfg.AckDev != "" {
		if w.ack, err = OpenAckLog(cfg.AckDev, cfg.Layout, cfg.ID); err != nil {
			return rep, fmt.Errorf("write: %w", err)
		}
		defer w.ack.Close()
	}
	if cfg.Mode == ModeMmap {
		if err := w.mapAll(); err != nil {
			return rep, err
		}
		// munmap without msync on purpose: dirty pages are left for
		// writeback to race with whatever runs next.
		defer w.unmapAll()
	}

	// Keep the loop on one OS thread so RUSAGE_THREAD counts this
	// writer's faults and nobody else's.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	faults0, tfaults0 := pageFaults(unix.RUSAGE_SELF), pageFaults(unix.RUSAGE_THREAD)
	start := time.Now()
	w.ts = NewSeries(start)
	rep.PerSecond = w.ts
	if len(w.owned) > 0 {
		w.loop(ctx, start)
	}
	rep.ElapsedS = time.Since(start).Seconds()
	rep.FaultsThread = pageFaults(unix.RUSAGE_THREAD) - tfaults0
	rep.FaultsHint = pageFaults(unix.RUSAGE_SELF) - faults0
	if rep.ElapsedS > 0 {
		rep.WritesPerS = float64(rep.Writes) / rep.ElapsedS
		rep.FaultsPerS = float64(rep.FaultsThread) / rep.ElapsedS
	}
	rep.Errors = w.errs.strings()
	rep.ErrorsTotal = w.errs.total
	return rep, nil
}

// loadGens starts each owned block from the generation on disk so that a
// second write phase keeps increasing generations instead of restarting.
func (w *writer) loadGens() {
	for _, g := range w.owned {
		f, b := g/w.cfg.Blocks, g%w.cfg.Blocks
		n, err := unix.Pread(w.fds[f], w.buf, int64(b)*int64(w.cfg.BlockSize))
		if err != nil || n != len(w.buf) {
			w.errs.add("initial read %s block %d: n=%d err=%v", FileName(f), b, n, err)
			w.rep.Gens[f][b] = 0
			continue
		}
		// Against expected gen 0 an intact block is "ok" or "future".
		v := Classify(w.buf, uint32(f), uint32(b), w.cfg.Seed, 0)
		if v.Class != ClassOK && v.Class != ClassFuture {
			w.errs.add("initial read %s block %d: %s, starting from gen 0", FileName(f), b, v.Class)
			w.rep.Gens[f][b] = 0
			continue
		}
		w.rep.Gens[f][b] = int64(v.Found.Gen)
	}
}

func (w *writer) mapAll() error {
	for i, fd := range w.fds {
		m, err := unix.Mmap(fd, 0, int(w.cfg.FileSize()), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		if err != nil {
			w.unmapAll()
			return fmt.Errorf("mmap %s: %w", FileName(i), err)
		}
		w.maps = append(w.maps, m)
	}
	return nil
}

func (w *writer) unmapAll() {
	for _, m := range w.maps {
		if err := unix.Munmap(m); err != nil {
			w.errs.add("munmap: %v", err)
		}
	}
	w.maps = nil
}

// splitEpochs fills byEpoch; with one epoch it is owned itself, so the
// random sequence is the one of a run without epochs.
func (w *writer) splitEpochs() {
	w.epochs = Epochs{N: max(w.cfg.Epochs, 1), Files: w.cfg.Files, Duration: w.cfg.Duration}
	w.byEpoch = make([][]int, w.epochs.N)
	if w.epochs.N == 1 {
		w.byEpoch[0] = w.owned
		return
	}
	for i := range w.byEpoch {
		lo, hi := w.epochs.FileRange(i)
		for _, g := range w.owned {
			if f := g / w.cfg.Blocks; f >= lo && f < hi {
				w.byEpoch[i] = append(w.byEpoch[i], g)
			}
		}
	}
}

func (w *writer) loop(ctx context.Context, start time.Time) {
	dontneed := w.cfg.DontneedOneIn
	w.splitEpochs()
	for time.Since(start) < w.cfg.Duration && ctx.Err() == nil {
		mine := w.byEpoch[w.epochs.At(time.Since(start))]
		if len(mine) == 0 {
			// This writer owns nothing in these files; wait for the next.
			time.Sleep(time.Millisecond)
			continue
		}
		g := mine[w.rng.Intn(len(mine))]
		f, b := g/w.cfg.Blocks, g%w.cfg.Blocks
		gen := uint64(w.rep.Gens[f][b]) + 1
		EncodeBlock(w.buf, Header{File: uint32(f), Block: uint32(b), Writer: uint32(w.cfg.ID), Gen: gen, Seed: w.cfg.Seed})
		off := int64(b) * int64(w.cfg.BlockSize)

		var err error
		if w.cfg.Mode == ModeMmap {
			err = safeCopy(w.maps[f][off:off+int64(w.cfg.BlockSize)], w.buf)
		} else {
			var n int
			n, err = unix.Pwrite(w.fds[f], w.buf, off)
			if err == nil && n != len(w.buf) {
				err = fmt.Errorf("short write %d of %d", n, len(w.buf))
			}
		}
		if err != nil {
			// The block is now in an unknown state; keep the last completed
			// gen so verify reports what the failure left behind.
			w.errs.add("%s %s block %d gen %d: %v", w.cfg.Mode, FileName(f), b, gen, err)
			continue
		}
		w.rep.Gens[f][b] = int64(gen)
		w.rep.Writes++
		w.ts.Add("writes", time.Now())
		n := w.rep.Writes

		if w.cfg.Mode == ModeMmap {
			if w.cfg.MsyncEvery > 0 && n%int64(w.cfg.MsyncEvery) == 0 {
				w.rep.Msyncs++
				if err := unix.Msync(w.maps[f], unix.MS_SYNC); err != nil {
					w.errs.add("msync %s: %v", FileName(f), err)
				} else {
					w.acked(f)
				}
			}
			if dontneed > 0 && w.rng.Intn(dontneed) == 0 {
				w.dropRange()
			}
		}
		if w.cfg.CheckEvery > 0 && n%int64(w.cfg.CheckEvery) == 0 {
			w.readBack()
		}
		if w.cfg.FsyncEvery > 0 && n%int64(w.cfg.FsyncEvery) == 0 {
			w.rep.Fsyncs++
			if err := unix.Fsync(w.fds[f]); err != nil {
				w.errs.add("fsync %s: %v", FileName(f), err)
			} else {
				w.acked(f)
			}
		}
		if w.cfg.FdatasyncEvery > 0 && n%int64(w.cfg.FdatasyncEvery) == 0 {
			w.rep.Fdatasyncs++
			if err := unix.Fdatasync(w.fds[f]); err != nil {
				w.errs.add("fdatasync %s: %v", FileName(f), err)
			} else {
				w.acked(f)
			}
		}
	}
}

// acked records, after a sync of file f returned success, the
// generations this writer had completed in f: they must survive a power cut.
func (w *writer) acked(f int) {
	if w.ack == nil {
		return
	}
	if err := w.ack.Ack(f, w.rep.Gens[f]); err != nil {
		w.errs.add("%v", err)
		return
	}
	w.rep.Acks++
}

// maxBadReads bounds how many bad read-backs are described in the report.
const maxBadReads = 20

// readBack preads a random owned block and checks that it holds the last
// generation this writer completed: nobody else writes it, so anything else
// is a lost (stale), misplaced or corrupted write seen by the application.
func (w *writer) readBack() {
	g := w.owned[w.rng.Intn(len(w.owned))]
	f, b := g/w.cfg.Blocks, g%w.cfg.Blocks
	want := w.rep.Gens[f][b]
	if want < 0 {
		return
	}
	w.rep.Readbacks++
	n, err := unix.Pread(w.fds[f], w.rbuf, int64(b)*int64(w.cfg.BlockSize))
	if err != nil || n != len(w.rbuf) {
		w.errs.add("read-back %s block %d: n=%d err=%v", FileName(f), b, n, err)
		return
	}
	v := Classify(w.rbuf, uint32(f), uint32(b), w.cfg.Seed, uint64(want))
	if v.Class == ClassOK {
		return
	}
	w.rep.ReadbackBad++
	w.ts.Add("readback_bad", time.Now())
	if len(w.rep.BadReads) < maxBadReads {
		found := "nothing recognizable"
		if v.Found != nil {
			found = fmt.Sprintf("file %d block %d writer %d gen %d", v.Found.File, v.Found.Block, v.Found.Writer, v.Found.Gen)
		}
		w.rep.BadReads = append(w.rep.BadReads, fmt.Sprintf("%s block %d after %d writes: %s, expected gen %d, found %s",
			FileName(f), b, w.rep.Writes, v.Class, want, found))
	}
}

// dropRange zaps the PTEs of a random page range so the next access takes
// a fresh page fault (and page_mkwrite) on pages that may since have had
// their address_space_operations swapped.
func (w *writer) dropRange() {
	f := w.rng.Intn(len(w.maps))
	pages := len(w.maps[f]) / w.page
	if pages == 0 {
		return
	}
	first := w.rng.Intn(pages)
	count := 1 + w.rng.Intn(min(16, pages-first))
	r := w.maps[f][first*w.page : (first+count)*w.page]
	w.rep.Dontneeds++
	if err := unix.Madvise(r, unix.MADV_DONTNEED); err != nil {
		w.errs.add("madvise %s pages %d+%d: %v", FileName(f), first, count, err)
	}
}

// pageFaults returns the minor+major fault count of who (RUSAGE_SELF: the
// whole process; RUSAGE_THREAD: the calling OS thread).
func pageFaults(who int) int64 {
	var ru unix.Rusage
	if err := unix.Getrusage(who, &ru); err != nil {
		return 0
	}
	return ru.Minflt + ru.Majflt
}
