package guest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// DefragConfig configures the extent-moving worker. Only Layout.Dir,
// Files and Seed are used; ranges are in file-system blocks.
type DefragConfig struct {
	Layout
	ID          int
	DonorDir    string // must be on the same file system as Dir; "" = Dir
	Duration    time.Duration
	RangeBlocks int
	Rejournal   bool
	ReopenOneIn int // close+reopen the orig file before 1 in N attempts; 0 = never
	// BusyRetries: on EBUSY, fsync the orig (committing the transaction
	// that pins the just-moved buffers) and retry the rest of the range
	// up to this many times. 0 = count EBUSY and move on.
	BusyRetries int
	// Epochs: move only the files of the current epoch (see Epochs); 0 or
	// 1 = every file all the time.
	Epochs int
	// EvictOneIn: before 1 in N attempts, drop the clean cached pages of
	// the range (POSIX_FADV_DONTNEED), so that the move has to read blocks
	// that are not in the page cache. 0 = never.
	EvictOneIn int
	// Donor is the donor strategy: DonorFresh (also ""), DonorShared or
	// DonorInplace. Every strategy uses donor_start = orig_start, as
	// e4defrag and fio do.
	Donor string
}

// Donor strategies for DefragConfig.Donor.
const (
	// DonorFresh creates a new donor per attempt: O_EXCL create, ftruncate
	// to the orig's size, fallocate just the range, move, close, unlink.
	DonorFresh = "fresh"
	// DonorShared keeps one unlinked donor per worker for the whole run,
	// fallocated over the largest work file once. A successful move leaves
	// the orig's old blocks in the donor range, which serve as the next
	// donor blocks for that range; before each move FIEMAP checks that
	// the range is fully allocated and fallocates it again if not
	// (counted in donor_refallocs).
	DonorShared = "shared"
	// DonorInplace mimics fio's e4defrag engine with inplace=1: one
	// unlinked donor per worker; each attempt fallocates the donor range,
	// moves, then ftruncates the donor to 0, freeing the blocks it got.
	DonorInplace = "inplace"
)

// DefragReport is the JSON document printed by `pbguest defrag`.
type DefragReport struct {
	ID       int            `json:"id"`
	Attempts int64          `json:"attempts"`
	Results  map[string]int `json:"results"`
	// Transitions counts successful moves whose orig had the journal flag
	// right before the ioctl: each is one a_ops swap on a live inode.
	Transitions int64 `json:"transitions"`
	// FlagClearedAfter counts attempts, whatever their result, whose orig
	// had the journal flag before the ioctl and not after: the fallback
	// kernel's signature of an a_ops swap.
	FlagClearedAfter int64          `json:"flag_cleared_after"`
	BusyRetries      int64          `json:"busy_retries"`
	Rejournals       int64          `json:"rejournals"`
	RejournalErrors  map[string]int `json:"rejournal_errors"`
	BlocksMoved      uint64         `json:"blocks_moved"`
	Reopens          int64          `json:"reopens"`
	SetupErrors      map[string]int `json:"setup_errors"`
	Errors           []string       `json:"errors"`
	FSBlockSize      int64          `json:"fs_block_size"`
	ElapsedS         float64        `json:"elapsed_s"`
	// Evictions counts ranges whose clean cached pages were dropped before
	// the move (EvictOneIn).
	Evictions int64 `json:"evictions"`
	// FilesMoved counts the work files with at least one successful move.
	// Where the first move of a file swaps its a_ops and nothing swaps
	// them back while it stays open (buffered iomap), it counts the swaps.
	FilesMoved int `json:"files_moved"`
	// Donor is the donor strategy used (fresh, shared, inplace).
	Donor string `json:"donor"`
	// DonorRefallocs counts, for the shared donor, attempts whose donor
	// range was not fully allocated (FIEMAP) and was fallocated again.
	DonorRefallocs int64 `json:"donor_refallocs"`
	// MovesPerS is results["moved"] / elapsed_s: successful MOVE_EXT
	// calls per second. AttemptsPerS counts every ioctl call.
	MovesPerS    float64 `json:"moves_per_s"`
	AttemptsPerS float64 `json:"attempts_per_s"`
	// PerSecond counts moves, refusals (any errno) and a_ops transitions
	// per second.
	PerSecond *Series `json:"per_second,omitempty"`
}

func (c *DefragConfig) validate() error {
	if c.Dir == "" {
		return errors.New("--dir is required")
	}
	if c.Files <= 0 {
		return fmt.Errorf("--files must be > 0, got %d", c.Files)
	}
	if c.Duration <= 0 {
		return fmt.Errorf("--duration must be > 0, got %s", c.Duration)
	}
	if c.RangeBlocks <= 0 {
		return fmt.Errorf("--range-blocks must be > 0, got %d", c.RangeBlocks)
	}
	if c.ReopenOneIn < 0 || c.BusyRetries < 0 || c.EvictOneIn < 0 {
		return errors.New("--reopen-one-in, --busy-retries and --evict-one-in must be >= 0")
	}
	if c.Epochs != 0 {
		if err := validateEpochs(c.Epochs, c.Files); err != nil {
			return err
		}
	}
	switch c.Donor {
	case "":
		c.Donor = DonorFresh
	case DonorFresh, DonorShared, DonorInplace:
	default:
		return fmt.Errorf("--donor must be fresh, shared or inplace, got %q", c.Donor)
	}
	if c.DonorDir == "" {
		c.DonorDir = c.Dir
	}
	// MOVE_EXT needs both inodes on one file system; catch that up front
	// instead of counting thousands of identical failures.
	var a, b unix.Stat_t
	if err := unix.Stat(c.Dir, &a); err != nil {
		return fmt.Errorf("stat --dir: %w", err)
	}
	if err := unix.Stat(c.DonorDir, &b); err != nil {
		return fmt.Errorf("stat --donor-dir: %w", err)
	}
	if b.Mode&unix.S_IFMT != unix.S_IFDIR {
		return fmt.Errorf("--donor-dir %s is not a directory", c.DonorDir)
	}
	if a.Dev != b.Dev {
		return fmt.Errorf("--donor-dir %s is not on the same file system as --dir %s", c.DonorDir, c.Dir)
	}
	return nil
}

type defragger struct {
	cfg  DefragConfig
	fds  []int
	rng  *RNG
	rep  *DefragReport
	errs errList
	ts   *Series
	fsbs int64
	pid  int
	iter int64
	// donorFD is the worker's long-lived donor (shared, inplace); -1 for fresh.
	donorFD int
	moved   []bool // per work file: moved at least once
	epochs  Epochs
}

// Defrag moves random aligned ranges of the work files onto fallocated
// donor blocks (see the Donor* strategies) until the duration ends or ctx
// is cancelled. Kernel refusals are counted per errno, not returned as
// errors; failing to create a shared or inplace donor is an error.
func Defrag(ctx context.Context, cfg DefragConfig) (DefragReport, error) {
	if err := cfg.validate(); err != nil {
		return DefragReport{}, err
	}
	fds := make([]int, cfg.Files)
	for i := range fds {
		fd, err := unix.Open(cfg.Path(i), unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			closeAll(fds[:i])
			return DefragReport{}, fmt.Errorf("defrag open %s: %w", cfg.Path(i), err)
		}
		fds[i] = fd
	}
	defer closeAll(fds)

	var sfs unix.Statfs_t
	if err := unix.Fstatfs(fds[0], &sfs); err != nil {
		return DefragReport{}, fmt.Errorf("defrag statfs %s: %w", cfg.Path(0), err)
	}
	rep := DefragReport{
		ID: cfg.ID,
		// Pre-seed the expected outcomes so reports show explicit zeros.
		Results:         map[string]int{"moved": 0, "EOPNOTSUPP": 0, "EBUSY": 0, "ENODATA": 0, "EINVAL": 0},
		RejournalErrors: map[string]int{},
		SetupErrors:     map[string]int{},
		FSBlockSize:     sfs.Bsize,
	}
	d := &defragger{
		cfg:     cfg,
		fds:     fds,
		rng:     NewRNG(DeriveSeed(cfg.Seed, roleDefrag, uint64(cfg.ID))),
		rep:     &rep,
		fsbs:    sfs.Bsize,
		pid:     os.Getpid(),
		donorFD: -1,
		moved:   make([]bool, len(fds)),
	}
	rep.Donor = cfg.Donor
	if cfg.Donor != DonorFresh {
		if err := d.openLongDonor(); err != nil {
			return DefragReport{}, err
		}
		defer unix.Close(d.donorFD)
	}
	d.epochs = Epochs{N: max(cfg.Epochs, 1), Files: len(fds), Duration: cfg.Duration}
	start := time.Now()
	d.ts = NewSeries(start)
	rep.PerSecond = d.ts
	for time.Since(start) < cfg.Duration && ctx.Err() == nil {
		d.once(d.epochs.At(time.Since(start)))
	}
	rep.ElapsedS = time.Since(start).Seconds()
	if rep.ElapsedS > 0 {
		rep.MovesPerS = float64(rep.Results["moved"]) / rep.ElapsedS
		rep.AttemptsPerS = float64(rep.Attempts) / rep.ElapsedS
	}
	rep.Errors = d.errs.strings()
	return rep, nil
}

// setupErr counts a failure that kept an attempt from reaching the ioctl.
func (d *defragger) setupErr(op string, err error) {
	d.rep.SetupErrors[op+":"+ErrnoName(err)]++
	d.errs.add("%s: %v", op, err)
}

// once makes one attempt on a random file of the given epoch.
func (d *defragger) once(epoch int) {
	d.iter++
	lo, hi := d.epochs.FileRange(epoch)
	f := lo + d.rng.Intn(hi-lo)
	if d.fds[f] < 0 || (d.cfg.ReopenOneIn > 0 && d.rng.Intn(d.cfg.ReopenOneIn) == 0) {
		if d.fds[f] >= 0 {
			unix.Close(d.fds[f])
			d.fds[f] = -1
		}
		fd, err := unix.Open(d.cfg.Path(f), unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			d.setupErr("reopen", err)
			return
		}
		d.fds[f] = fd
		d.rep.Reopens++
	}
	orig := d.fds[f]

	var st unix.Stat_t
	if err := unix.Fstat(orig, &st); err != nil {
		d.setupErr("fstat", err)
		return
	}
	nblk := st.Size / d.fsbs
	if nblk == 0 {
		d.setupErr("empty", fmt.Errorf("%s has no whole blocks", FileName(f)))
		return
	}
	r := min(int64(d.cfg.RangeBlocks), nblk)
	first := int64(d.rng.Intn(int(nblk/r))) * r

	if d.cfg.Rejournal {
		d.rejournal(orig)
	}
	// Drawn only when enabled, so other runs keep their random sequence.
	if d.cfg.EvictOneIn > 0 && d.rng.Intn(d.cfg.EvictOneIn) == 0 {
		if err := unix.Fadvise(orig, first*d.fsbs, r*d.fsbs, unix.FADV_DONTNEED); err != nil {
			d.setupErr("fadvise-dontneed", err)
		} else {
			d.rep.Evictions++
		}
	}
	donor, release, err := d.acquireDonor(st.Size, first, r)
	if err != nil {
		return
	}
	// Read the flag as late as possible so a transition is attributed to
	// this ioctl and not to an earlier one.
	flagBefore, err := GetFlags(orig)
	if err != nil {
		d.setupErr("getflags", err)
	}
	moved, err := d.move(orig, donor, uint64(first), uint64(r))
	d.rep.Attempts++
	d.rep.BlocksMoved += moved
	now := time.Now()
	if err == nil {
		d.ts.Add("moved", now)
		d.rep.Results["moved"]++
		if !d.moved[f] {
			d.moved[f] = true
			d.rep.FilesMoved++
		}
	} else {
		d.ts.Add("refused", now)
		d.rep.Results[ErrnoName(err)]++
	}
	if flagBefore&FSJournalDataFL != 0 {
		if err == nil {
			d.ts.Add("transitions", now)
			d.rep.Transitions++
		}
		if after, gerr := GetFlags(orig); gerr == nil && after&FSJournalDataFL == 0 {
			d.rep.FlagClearedAfter++
		}
	}
	release()
}

// acquireDonor returns a donor whose blocks [first, first+n) are allocated,
// and the function to call once the attempt is over.
func (d *defragger) acquireDonor(size, first, n int64) (int, func(), error) {
	switch d.cfg.Donor {
	case DonorShared:
		if err := d.ensureDonorRange(first, n); err != nil {
			return -1, nil, err
		}
		return d.donorFD, func() {}, nil
	case DonorInplace:
		if err := unix.Fallocate(d.donorFD, 0, first*d.fsbs, n*d.fsbs); err != nil {
			d.setupErr("donor-fallocate", err)
			return -1, nil, err
		}
		return d.donorFD, func() {
			if err := unix.Ftruncate(d.donorFD, 0); err != nil {
				d.setupErr("donor-ftruncate", err)
			}
		}, nil
	}
	fd, name, err := d.makeDonor(size, first, n)
	if err != nil {
		return -1, nil, err
	}
	return fd, func() {
		unix.Close(fd)
		if err := unix.Unlink(name); err != nil {
			d.setupErr("unlink-donor", err)
		}
	}, nil
}

// openLongDonor creates the worker's long-lived donor for the shared and
// inplace strategies and unlinks it at once (as e4defrag and fio do), so a
// killed worker leaves nothing behind. The shared donor is sized and
// fallocated to the largest work file; the inplace donor starts empty.
func (d *defragger) openLongDonor() error {
	name := filepath.Join(d.cfg.DonorDir, fmt.Sprintf("pbdonor-%d-%d-%s", d.pid, d.cfg.ID, d.cfg.Donor))
	fd, err := unix.Open(name, unix.O_CREAT|unix.O_RDWR|unix.O_EXCL|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("defrag create %s donor %s: %w", d.cfg.Donor, name, err)
	}
	if err := unix.Unlink(name); err != nil {
		unix.Close(fd)
		return fmt.Errorf("defrag unlink donor %s: %w", name, err)
	}
	fail := func(op string, err error) error {
		unix.Close(fd)
		return fmt.Errorf("defrag %s donor %s: %s: %w", d.cfg.Donor, name, op, err)
	}
	if flags, err := GetFlags(fd); err == nil && flags&FSJournalDataFL != 0 {
		if err := SetFlags(fd, flags&^FSJournalDataFL); err != nil {
			return fail("clear journal flag", err)
		}
	}
	if d.cfg.Donor == DonorShared {
		var size int64
		for i, ofd := range d.fds {
			var st unix.Stat_t
			if err := unix.Fstat(ofd, &st); err != nil {
				return fail("stat "+FileName(i), err)
			}
			size = max(size, st.Size)
		}
		if size > 0 {
			if err := unix.Fallocate(fd, 0, 0, size); err != nil {
				return fail("fallocate", err)
			}
		}
	}
	d.donorFD = fd
	return nil
}

// ensureDonorRange makes sure the shared donor has blocks [first,
// first+n) allocated (written or unwritten), fallocating them again when
// FIEMAP shows a hole there or cannot tell.
func (d *defragger) ensureDonorRange(first, n int64) error {
	off, length := first*d.fsbs, n*d.fsbs
	got, err := AllocatedBytes(d.donorFD, off, length)
	if err != nil {
		d.setupErr("donor-fiemap", err)
	} else if got >= length {
		return nil
	}
	d.rep.DonorRefallocs++
	if err := unix.Fallocate(d.donorFD, 0, off, length); err != nil {
		d.setupErr("donor-fallocate", err)
		return err
	}
	return nil
}

// move runs one MOVE_EXT attempt, retrying the unmoved rest after EBUSY
// when BusyRetries allows, and returns the total blocks moved.
func (d *defragger) move(orig, donor int, start, n uint64) (uint64, error) {
	var total uint64
	for try := 0; ; try++ {
		moved, err := MoveExt(orig, donor, start+total, n-total)
		total += moved
		if err == nil || !errors.Is(err, unix.EBUSY) || try >= d.cfg.BusyRetries || total >= n {
			return total, err
		}
		d.rep.BusyRetries++
		if ferr := unix.Fsync(orig); ferr != nil {
			d.setupErr("busy-fsync", ferr)
			return total, err
		}
	}
}

// rejournal sets FS_JOURNAL_DATA_FL again after a move cleared it, so
// every later move is a fresh journal->ordered transition.
func (d *defragger) rejournal(fd int) {
	flags, err := GetFlags(fd)
	if err != nil {
		d.setupErr("getflags", err)
		return
	}
	if flags&FSJournalDataFL != 0 {
		return
	}
	if err := SetFlags(fd, flags|FSJournalDataFL); err != nil {
		d.rep.RejournalErrors[ErrnoName(err)]++
		return
	}
	d.rep.Rejournals++
}

// makeDonor creates a uniquely named donor of the orig's size with the
// range [first, first+n) blocks preallocated, as e4defrag does.
func (d *defragger) makeDonor(size, first, n int64) (int, string, error) {
	name := filepath.Join(d.cfg.DonorDir, fmt.Sprintf("pbdonor-%d-%d-%d", d.pid, d.cfg.ID, d.iter))
	fd, err := unix.Open(name, unix.O_CREAT|unix.O_RDWR|unix.O_EXCL|unix.O_CLOEXEC, 0o600)
	if err != nil {
		d.setupErr("donor-create", err)
		return -1, "", err
	}
	fail := func(op string, err error) (int, string, error) {
		d.setupErr(op, err)
		unix.Close(fd)
		unix.Unlink(name)
		return -1, "", err
	}
	// A donor inheriting +j from its directory would make every move fail
	// with EOPNOTSUPP for the donor's sake; only the orig should carry it.
	if flags, err := GetFlags(fd); err == nil && flags&FSJournalDataFL != 0 {
		if err := SetFlags(fd, flags&^FSJournalDataFL); err != nil {
			return fail("donor-clear-journal", err)
		}
	}
	if err := unix.Ftruncate(fd, size); err != nil {
		return fail("donor-ftruncate", err)
	}
	if err := unix.Fallocate(fd, 0, first*d.fsbs, n*d.fsbs); err != nil {
		return fail("donor-fallocate", err)
	}
	return fd, name, nil
}
