// Package casespec is the plain data of a case file (case.yaml): the
// kernel, VM, file system, workload and variant sections, with their YAML
// and JSON forms. harness.Case loads and validates them; the run record and
// the guest command lines are built from them without importing harness.
package casespec

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// KernelSpec: source + kconfig fragments + extra kernel command line.
type KernelSpec struct {
	Source    string   `yaml:"source"`    // debian:linux-source-6.12, dir:PATH, git:PATH@REF or input:NAME
	Fragments []string `yaml:"fragments"` // paths relative to the case folder
	Cmdline   string   `yaml:"cmdline"`
}

// VMSpec sizes the guest and bounds its phases.
type VMSpec struct {
	MemoryMB    int      `yaml:"memory_mb"`
	CPUs        int      `yaml:"cpus"`
	ScratchMB   int      `yaml:"scratch_mb"`
	BootTimeout Duration `yaml:"boot_timeout"`
	// Packages are Debian packages installed in the guest image on top of
	// the stock recipe (e.g. [fio]); a case that asks gets an image of its
	// own, every other case keeps the stock image.
	Packages []string `yaml:"packages"`
}

// FilesystemSpec says how the scratch disk is made and mounted.
type FilesystemSpec struct {
	Mkfs         string `yaml:"mkfs"`          // command, the device is appended
	MountOptions string `yaml:"mount_options"` // -o value
	JournalData  bool   `yaml:"journal_data"`  // chattr +j the work files (needs nodelalloc)
	// CheckBufferedIomap counts the iomap buffered-I/O tracepoints on the
	// scratch file system and fails the run in setup when none fired while
	// the work files were written: the mount option alone proves nothing.
	CheckBufferedIomap bool `yaml:"check_buffered_iomap"`
	// RequireLargeFolios (with the iomap check) fails the run in setup
	// when no page-cache folio above order 0 was added on the scratch file
	// system while the work files were written: a run on order-0 folios
	// only does not test a large-folio series.
	RequireLargeFolios bool `yaml:"require_large_folios"`
}

// WorkloadSpec sizes the guest workload.
type WorkloadSpec struct {
	// Kind is the workload: "patchbay" (the default: pbguest's writers,
	// defrag workers and block oracle) or "fio" (the job file of Fio).
	Kind          string   `yaml:"kind"`
	Fio           FioSpec  `yaml:"fio"`
	Duration      Duration `yaml:"duration"`
	Files         int      `yaml:"files"`
	Blocks        int      `yaml:"blocks"` // per file, 4 KiB each
	MmapWriters   int      `yaml:"mmap_writers"`
	PwriteWriters int      `yaml:"pwrite_writers"`
	MsyncEvery    int      `yaml:"msync_every"`
	CheckEvery    int      `yaml:"check_every"` // writers read a written block back every K writes
	// Epochs splits the run into N time slices, each writing and moving
	// only its own group of files, so workers keep arriving at files no
	// move has touched yet (default 1: every file all the time).
	Epochs int `yaml:"epochs"`
	// Writers fsync / fdatasync their file every K writes (0 = never).
	FsyncEvery     int `yaml:"fsync_every"`
	FdatasyncEvery int `yaml:"fdatasync_every"`
	// PowerCut: cut the VM under load and check what survives (harness/powercut.go).
	PowerCut *PowerCutSpec `yaml:"power_cut"`
	Defrag   DefragSpec    `yaml:"defrag"`
}

// DefragSpec sizes the defrag workers of the patchbay workload.
type DefragSpec struct {
	Workers     int  `yaml:"workers"`
	RangeBlocks int  `yaml:"range_blocks"`
	Rejournal   bool `yaml:"rejournal"` // set +j again after a fallback cleared it
	// Tool: "ioctl" (default), pbguest's own EXT4_IOC_MOVE_EXT calls,
	// counted by errno; or "e4defrag", the e2fsprogs tool, whose
	// outcomes are only what it prints (it reports refusals as
	// "ioctl:Success"), so expectations on moves do not apply.
	Tool string `yaml:"tool"`
	// Donor: fresh (default, a new donor file per move), shared (one
	// per worker) or inplace (fallocate, move, truncate, as fio's
	// e4defrag engine with inplace=1). ioctl tool only.
	Donor string `yaml:"donor"`
	// EvictOneIn: before 1 in N moves, drop the range's clean cached
	// pages, so moves also read blocks that are not cached. 0 = never.
	EvictOneIn int `yaml:"evict_one_in"`
}

// Defrag tools (WorkloadSpec.Defrag.Tool).
const (
	DefragIoctl    = "ioctl"
	DefragE4defrag = "e4defrag"
)

// Variant is one kernel to compare: the base plus patches, and what its runs
// must show. Its patch stack (harness.Case.PatchStack) is: Base's stack,
// then Patches; then Drop and Replace, whose selectors refer to that stack
// as it was before either; then Add. Paths are relative to the case folder
// and may name a patch or mail, an mbox, a directory of patches or a quilt
// series.
type Variant struct {
	Description string        `yaml:"description"`
	Base        string        `yaml:"base"`    // start from another variant's stack
	Patches     []string      `yaml:"patches"` // appended to the base's stack
	Drop        []PatchSel    `yaml:"drop"`    // patches to leave out
	Replace     []Replacement `yaml:"replace"` // patches to swap for others
	Add         []string      `yaml:"add"`     // appended last
	Expect      Expectation   `yaml:"expect"`
}

// PatchSel selects one patch of a stack: a 1-based index (a YAML integer)
// or a substring of its subject (anything else).
type PatchSel struct {
	Index     int
	Substring string
}

// UnmarshalYAML reads an integer as an index, any other scalar as a subject
// substring.
func (s *PatchSel) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: a patch is selected by its 1-based index or a substring of its subject", n.Line)
	}
	if n.Tag == "!!int" {
		i, err := strconv.Atoi(n.Value)
		if err != nil || i < 1 {
			return fmt.Errorf("line %d: patch index %s: want 1 or more", n.Line, n.Value)
		}
		*s = PatchSel{Index: i}
		return nil
	}
	if strings.TrimSpace(n.Value) == "" {
		return fmt.Errorf("line %d: empty patch selector", n.Line)
	}
	*s = PatchSel{Substring: n.Value}
	return nil
}

// MarshalYAML writes the selector back as it was read.
func (s PatchSel) MarshalYAML() (any, error) {
	if s.Index > 0 {
		return s.Index, nil
	}
	return s.Substring, nil
}

func (s PatchSel) String() string {
	if s.Index > 0 {
		return fmt.Sprintf("#%d", s.Index)
	}
	return strconv.Quote(s.Substring)
}

// Replacement swaps the patch Match selects for the patches of With.
type Replacement struct {
	Match PatchSel `yaml:"match"`
	With  string   `yaml:"with"`
}

// Expectation is what a run of a variant must show to pass. Unset limits are
// not checked.
type Expectation struct {
	MinMoved             *int `yaml:"min_moved"`              // successful EXT4_IOC_MOVE_EXT calls
	MaxMoved             *int `yaml:"max_moved"`              //
	MinRefusedEOPNOTSUPP *int `yaml:"min_refused_eopnotsupp"` //
	MinTransitions       *int `yaml:"min_transitions"`        // moves that swapped a_ops
	MinFilesMoved        *int `yaml:"min_files_moved"`        // work files with a successful move
	MaxBadBlocks         *int `yaml:"max_bad_blocks"`         // over all verify phases
	FsckClean            bool `yaml:"fsck_clean"`             // e2fsck -fn exits 0
	NoFindings           bool `yaml:"no_findings"`            // no severe console finding
}

// Duration is a time.Duration written as "20s" in YAML.
type Duration time.Duration

// durationShape is what ParseDuration accepts, whatever the size.
var durationShape = regexp.MustCompile(`^[-+]?([0-9.]+(ns|us|µs|ms|s|m|h))+$`)

// UnmarshalYAML parses Go duration syntax.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		if strings.Contains(err.Error(), "invalid duration") && durationShape.MatchString(n.Value) {
			return fmt.Errorf("line %d: %q is out of range (at most %s)", n.Line, n.Value, time.Duration(math.MaxInt64))
		}
		return fmt.Errorf("line %d: %q is not a duration like 20s or 2m", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// MarshalYAML writes the duration back as text.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// MarshalJSON writes the duration as text, for summary.json.
func (d Duration) MarshalJSON() ([]byte, error) {
	return []byte(`"` + time.Duration(d).String() + `"`), nil
}

// UnmarshalJSON reads what MarshalJSON wrote.
func (d *Duration) UnmarshalJSON(b []byte) error {
	v, err := time.ParseDuration(strings.Trim(string(b), `"`))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Workload kinds (WorkloadSpec.Kind).
const (
	WorkloadPatchbay = "patchbay" // pbguest writers, defrag workers and block oracle
	WorkloadFio      = "fio"      // a fio job file, verified by fio
)

// FioSpec is the fio peer workload: a job file run in the guest on the
// scratch mount for the case duration, then verified by fio again live,
// after drop_caches and after a remount.
type FioSpec struct {
	// Job is the fio job file, relative to the case folder. It runs in
	// PB_DIR (a directory on the scratch mount) and may use ${PB_DIR},
	// ${PB_RUNTIME} (the duration in seconds) and ${PB_SEED} (the run's
	// seed), which fio expands from the environment.
	Job string `yaml:"job"`
	// Verify is the verify-only job file, relative to the case folder:
	// reads of every block with verify= set (and continue_on_error=verify
	// to count every bad block), run live, after drop_caches and after a
	// remount. Required: fio --verify_only replays a time_based job's
	// writes as reads without end (measured with fio 3.33 in the guest).
	Verify string `yaml:"verify"`
}

// PowerCutSpec asks for a power cut under load: at a moment drawn from the
// run's seed within After ("5s..15s", or one duration), measured from the
// start of the workload, the VM is cut without a sync, booted again on the
// same disks, the file system mounted (journal replay), every block checked
// against the generations the writers had acknowledged by fsync/msync,
// and e2fsck run. The workers die in the cut, so moves and refusals are
// not counted.
type PowerCutSpec struct {
	After string `yaml:"after"`

	lo, hi time.Duration // parsed from After by Parse
}

// Parse reads After, "A..B" or "A", for Window and Moment.
func (p *PowerCutSpec) Parse() error {
	a, b, isRange := strings.Cut(p.After, "..")
	if !isRange {
		b = a
	}
	lo, err1 := time.ParseDuration(strings.TrimSpace(a))
	hi, err2 := time.ParseDuration(strings.TrimSpace(b))
	switch {
	case p.After == "":
		return errors.New("missing: a moment like 10s or a range like 5s..15s")
	case err1 != nil || err2 != nil:
		return fmt.Errorf("%q: want a duration like 10s or a range like 5s..15s", p.After)
	case lo <= 0 || hi < lo:
		return fmt.Errorf("%q: want 0 < start <= end", p.After)
	}
	p.lo, p.hi = lo, hi
	return nil
}

// Window is the range of cut moments After gives (after Parse).
func (p *PowerCutSpec) Window() (lo, hi time.Duration) { return p.lo, p.hi }

// Moment is the run's cut time after the workload starts: lo plus a
// seed-derived offset in whole milliseconds, so a seed reproduces its cut.
func (p *PowerCutSpec) Moment(seed uint64) time.Duration {
	span := uint64((p.hi - p.lo) / time.Millisecond)
	if span == 0 {
		return p.lo
	}
	return p.lo + time.Duration(splitmix64(seed^0x706f776572637574)%(span+1))*time.Millisecond
}

func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}
