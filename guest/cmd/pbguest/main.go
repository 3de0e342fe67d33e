// Command pbguest is the patchbay guest workload. Each subcommand prints
// exactly one JSON document on stdout; diagnostics go to stderr. It exits
// 0 whenever the job ran (even if it found corruption) or -h was given,
// 2 on usage errors and 1 on setup errors.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"patchbay/guest"
)

const usage = `usage: pbguest <prepare|write|defrag|e4defrag|verify> [flags]

common flags: --dir DIR --files N --blocks B --block-size BYTES --writers W --seed S
  prepare [--journal-data]
  write   --mode mmap|pwrite --id I [--duration 20s] [--msync-every K] [--fsync-every K] [--fdatasync-every K] [--dontneed-one-in N] [--check-every K] [--ack-dev DEV]
  defrag  [--donor fresh|shared|inplace] [--donor-dir DIR] [--id I] [--duration 20s] [--range-blocks R] [--rejournal] [--reopen-one-in N] [--busy-retries N]
  e4defrag [--id I] [--duration 20s] [--timeout 60s] [--e4defrag PATH] [--keep-lines 20]
  verify  [--phase NAME] [--expect F ... | --acks DEV] [--mmap] [--max-report 50]
`

// usageError marks errors that should exit 2 rather than 1.
type usageError struct{ error }

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	// SIGTERM/SIGINT end the loop early but still print the report.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	var (
		out any
		err error
	)
	switch args[0] {
	case "prepare":
		out, err = cmdPrepare(args[1:], stderr)
	case "write":
		out, err = cmdWrite(ctx, args[1:], stderr)
	case "defrag":
		out, err = cmdDefrag(ctx, args[1:], stderr)
	case "e4defrag":
		out, err = cmdE4defrag(ctx, args[1:], stderr)
	case "verify":
		out, err = cmdVerify(args[1:], stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		err = usageError{fmt.Errorf("unknown subcommand %q", args[0])}
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "pbguest %s: %v\n%s", args[0], err, usage)
		return 2
	}
	if err != nil {
		// Library errors already name the subcommand and the file.
		fmt.Fprintf(stderr, "pbguest: %v\n", err)
		return 1
	}
	if err := json.NewEncoder(stdout).Encode(out); err != nil {
		fmt.Fprintf(stderr, "pbguest %s: write JSON: %v\n", args[0], err)
		return 1
	}
	return 0
}

// newFlags registers the flags every subcommand shares.
func newFlags(name string, stderr io.Writer, l *guest.Layout) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&l.Dir, "dir", "", "directory holding the work files (required)")
	fs.IntVar(&l.Files, "files", 4, "number of work files")
	fs.IntVar(&l.Blocks, "blocks", 256, "blocks per file")
	fs.IntVar(&l.BlockSize, "block-size", 4096, "block size in bytes")
	fs.IntVar(&l.Writers, "writers", 1, "total writer count (block g is owned by g % writers)")
	fs.Uint64Var(&l.Seed, "seed", 1, "run seed; all randomness derives from it and the worker id")
	return fs
}

// parse wraps flag errors as usage errors and rejects stray arguments.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))}
	}
	return nil
}

// validate turns parameter problems found by the library into usage errors.
func validate(err error) error {
	if err != nil {
		return usageError{err}
	}
	return nil
}

func cmdPrepare(args []string, stderr io.Writer) (any, error) {
	var l guest.Layout
	fs := newFlags("prepare", stderr, &l)
	jd := fs.Bool("journal-data", false, "set FS_JOURNAL_DATA_FL (chattr +j) on every file")
	if err := parse(fs, args); err != nil {
		return nil, err
	}
	if err := validate(l.Validate()); err != nil {
		return nil, err
	}
	return guest.Prepare(l, *jd)
}

func cmdWrite(ctx context.Context, args []string, stderr io.Writer) (any, error) {
	var c guest.WriteConfig
	fs := newFlags("write", stderr, &c.Layout)
	fs.StringVar(&c.Mode, "mode", "", "mmap or pwrite (required)")
	fs.IntVar(&c.ID, "id", -1, "writer id in [0, writers) (required)")
	fs.DurationVar(&c.Duration, "duration", 20*time.Second, "how long to write")
	fs.IntVar(&c.MsyncEvery, "msync-every", 0, "mmap: msync(MS_SYNC) the file every K writes (0 = never)")
	fs.IntVar(&c.CheckEvery, "check-every", 0, "pread one written block back every K writes and compare (0 = never)")
	fs.IntVar(&c.FsyncEvery, "fsync-every", 0, "fsync the file every K writes (0 = never)")
	fs.IntVar(&c.FdatasyncEvery, "fdatasync-every", 0, "fdatasync the file every K writes (0 = never)")
	fs.IntVar(&c.DontneedOneIn, "dontneed-one-in", 32, "mmap: MADV_DONTNEED a random range after 1 in N writes (0 = never)")
	fs.IntVar(&c.Epochs, "epochs", 1, "split the run into N time slices, each writing only its own group of files")
	fs.StringVar(&c.AckDev, "ack-dev", "", "raw disk recording each successful fsync/fdatasync/msync with O_DIRECT|O_DSYNC, for the check after a power cut")
	if err := parse(fs, args); err != nil {
		return nil, err
	}
	if c.Mode != guest.ModeMmap && c.Mode != guest.ModePwrite {
		return nil, usageError{fmt.Errorf("--mode must be mmap or pwrite, got %q", c.Mode)}
	}
	if c.ID < 0 || c.ID >= c.Writers {
		return nil, usageError{fmt.Errorf("--id must be in [0, %d), got %d", c.Writers, c.ID)}
	}
	if err := validate(c.Validate()); err != nil {
		return nil, err
	}
	return guest.Write(ctx, c)
}

func cmdDefrag(ctx context.Context, args []string, stderr io.Writer) (any, error) {
	var c guest.DefragConfig
	fs := newFlags("defrag", stderr, &c.Layout)
	fs.StringVar(&c.Donor, "donor", guest.DonorFresh, "donor strategy: fresh (new donor per attempt), shared (one per worker, reused), inplace (fallocate, move, ftruncate 0 each attempt, like fio inplace=1)")
	fs.StringVar(&c.DonorDir, "donor-dir", "", "where to create donor files, same file system as --dir (default --dir)")
	fs.IntVar(&c.ID, "id", 0, "defrag worker id (seeds the stream, names donors)")
	fs.DurationVar(&c.Duration, "duration", 20*time.Second, "how long to move extents")
	fs.IntVar(&c.RangeBlocks, "range-blocks", 16, "file-system blocks per move, ranges aligned to it")
	fs.BoolVar(&c.Rejournal, "rejournal", false, "set FS_JOURNAL_DATA_FL again whenever a move cleared it")
	fs.IntVar(&c.ReopenOneIn, "reopen-one-in", 16, "close and reopen the orig file before 1 in N attempts (0 = never)")
	fs.IntVar(&c.BusyRetries, "busy-retries", 0, "on EBUSY fsync the orig and retry the rest of the range up to N times")
	fs.IntVar(&c.Epochs, "epochs", 1, "split the run into N time slices, each moving only its own group of files")
	fs.IntVar(&c.EvictOneIn, "evict-one-in", 0, "before 1 in N moves drop the range's clean cached pages (POSIX_FADV_DONTNEED), so the move reads uncached blocks (0 = never)")
	if err := parse(fs, args); err != nil {
		return nil, err
	}
	if c.Dir == "" {
		return nil, usageError{errors.New("--dir is required")}
	}
	switch c.Donor {
	case guest.DonorFresh, guest.DonorShared, guest.DonorInplace:
	default:
		return nil, usageError{fmt.Errorf("--donor must be fresh, shared or inplace, got %q", c.Donor)}
	}
	return guest.Defrag(ctx, c)
}

func cmdE4defrag(ctx context.Context, args []string, stderr io.Writer) (any, error) {
	var c guest.E4defragConfig
	fs := newFlags("e4defrag", stderr, &c.Layout)
	fs.IntVar(&c.ID, "id", 0, "worker id (seeds the choice of files)")
	fs.DurationVar(&c.Duration, "duration", 20*time.Second, "how long to keep running e4defrag")
	fs.DurationVar(&c.Timeout, "timeout", guest.DefaultE4defragTimeout, "kill one e4defrag invocation after this long")
	fs.StringVar(&c.Tool, "e4defrag", "", "e4defrag binary (default: PATH, then /usr/sbin/e4defrag, /sbin/e4defrag)")
	fs.IntVar(&c.KeepLines, "keep-lines", 20, "keep the last N output lines the parser did not recognise")
	if err := parse(fs, args); err != nil {
		return nil, err
	}
	switch {
	case c.Dir == "":
		return nil, usageError{errors.New("--dir is required")}
	case c.Files <= 0 || c.Duration <= 0 || c.Timeout <= 0 || c.KeepLines <= 0:
		return nil, usageError{errors.New("--files, --duration, --timeout and --keep-lines must be > 0")}
	}
	return guest.E4defrag(ctx, c)
}

// multiFlag collects a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func cmdVerify(args []string, stderr io.Writer) (any, error) {
	var c guest.VerifyConfig
	var expect multiFlag
	fs := newFlags("verify", stderr, &c.Layout)
	fs.StringVar(&c.Phase, "phase", "", "label copied into the report")
	fs.Var(&expect, "expect", "write-report JSON file; repeatable; expected gen is the max over all")
	fs.BoolVar(&c.Mmap, "mmap", false, "also read every block through a fresh read-only MAP_SHARED mapping")
	fs.IntVar(&c.MaxReport, "max-report", 50, "list at most this many bad blocks")
	acks := fs.String("acks", "", "ack disk written by `write --ack-dev`: each block must hold at least its last acknowledged generation")
	if err := parse(fs, args); err != nil {
		return nil, err
	}
	if *acks != "" && len(expect) > 0 {
		return nil, usageError{errors.New("--acks and --expect exclude each other")}
	}
	if err := validate(c.Validate()); err != nil {
		return nil, err
	}
	if c.MaxReport < 0 {
		return nil, usageError{fmt.Errorf("--max-report must be >= 0, got %d", c.MaxReport)}
	}
	if *acks != "" {
		floor, st, err := guest.ReadAcks(*acks, c.Layout)
		if err != nil {
			return nil, err
		}
		c.Expected, c.AtLeast = floor, true
		rep, err := guest.Verify(c)
		rep.Acks = &st
		return rep, err
	}
	exp, err := guest.LoadExpected(c.Layout, expect)
	if err != nil {
		return nil, err
	}
	c.Expected = exp
	return guest.Verify(c)
}
