// Package record is the data of a session: what producers (the runner, a
// decide session, merge) write to run.json and summary.json and what
// consumers (report, rundir, reproducer, minimize) read back, with the
// statistics computed from it. It is a leaf: it imports nothing that builds
// kernels, boots VMs or runs a guest. The JSON field names are the schema of
// report/SCHEMA.md; old results directories must keep loading.
package record

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"patchbay/triage"
)

// Outcome is the class of one run. Exactly one per run, never mixed: an
// infrastructure problem is never reported as a kernel failure.
type Outcome string

// Outcomes, in the order a report lists them.
const (
	Pass        Outcome = "pass"        // every expectation held
	Fail        Outcome = "fail"        // an expectation broke: data, fsck, refusals, moves
	Crash       Outcome = "crash"       // oops/BUG/panic/WARNING/lockdep/KASAN on the console
	Hang        Outcome = "hang"        // hung task, stall, or no progress before the deadline
	BootError   Outcome = "boot-error"  // no SSH before the boot deadline
	InfraError  Outcome = "infra-error" // the host failed: QEMU missing, disk full, ...
	Interrupted Outcome = "interrupted" // the user stopped the run
)

// Outcomes lists every outcome in report order.
var Outcomes = []Outcome{Pass, Fail, Crash, Hang, BootError, InfraError, Interrupted}

// RunRecord is everything one run produced, as written to run.json and
// summarized in summary.json.
type RunRecord struct {
	Case     string    `json:"case"`
	Variant  string    `json:"variant"`
	Index    int       `json:"index"`
	Seed     uint64    `json:"seed"`
	Kernel   string    `json:"kernel_key"`
	Release  string    `json:"kernel_release"`
	Accel    string    `json:"accel"`
	Started  time.Time `json:"started"`
	Seconds  float64   `json:"seconds"`
	BootSecs float64   `json:"boot_seconds"`
	// Start is how the VM started: cold, snapshot (cold, then saved the
	// kernel's snapshot) or restore; Snapshot is the snapshot's key.
	Start        string  `json:"start,omitempty"`
	Snapshot     string  `json:"snapshot,omitempty"`
	WorkloadSecs float64 `json:"workload_seconds,omitempty"` // wall time of the workload phase
	// Phases are the moments, from the run's start, at which its guest
	// steps began (ready, setup, workload, verify, ..., guest-done): where a
	// run's wall time went.
	Phases    []PhaseStart `json:"phases,omitempty"`
	Outcome   Outcome      `json:"outcome"`
	Reasons   []string     `json:"reasons"`
	Dir       string       `json:"dir"` // relative to the results directory
	QMPEvents []string     `json:"qmp_events,omitempty"`
	// Bytes of serial console dropped past the capture cap (0: complete).
	ConsoleDropped int64 `json:"console_dropped_bytes,omitempty"`

	JournalDataFiles int              `json:"journal_data_files"`
	BufferedIomap    *IomapActivity   `json:"buffered_iomap,omitempty"` // with filesystem.check_buffered_iomap
	Writers          []WriterResult   `json:"writers"`
	Defrag           []DefragResult   `json:"defrag"`
	Verify           []VerifyResult   `json:"verify"`
	Fsck             *FsckResult      `json:"fsck,omitempty"`
	PowerCut         *PowerCutResult  `json:"power_cut,omitempty"` // with workload.power_cut
	Findings         []triage.Finding `json:"findings"`
	// ConsoleTruncated: the console capture hit its size cap, so console.log
	// and the findings miss whatever the kernel printed after it.
	ConsoleTruncated bool `json:"console_truncated,omitempty"`
}

// PhaseStart is when one step of a run began, in seconds from its start.
type PhaseStart struct {
	Name string  `json:"name"`
	AtS  float64 `json:"at_s"`
}

// WriterResult is what one guest writer reported (subset of its JSON).
type WriterResult struct {
	ID      int      `json:"id"`
	Mode    string   `json:"mode"`
	Writes  int64    `json:"writes"`
	Errors  []string `json:"errors"`
	Elapsed float64  `json:"elapsed_s"`
	// Read-backs of a block the writer wrote, and those that did not
	// return its last write: a lost write seen live, even if a later write
	// would have hidden it from the final verify.
	Readbacks   int64    `json:"readbacks"`
	ReadbackBad int64    `json:"readback_bad"`
	BadReads    []string `json:"bad_readbacks,omitempty"`
	WritesPerS  float64  `json:"writes_per_s"`
	FaultsPerS  float64  `json:"faults_per_s"` // page faults/s of the writing thread
	// PerSecond: writes and readback_bad per second (pbguest writers).
	PerSecond *PerSecond `json:"per_second,omitempty"`
}

// PerSecond is a guest worker's event counts per whole second since it
// started (StartUnix, guest clock): Counts[name][i] events in second i.
type PerSecond struct {
	StartUnix float64            `json:"start_unix"`
	Counts    map[string][]int64 `json:"counts"`
}

// DefragResult is what one guest defrag worker reported.
type DefragResult struct {
	Attempts    int64            `json:"attempts"`
	Results     map[string]int64 `json:"results"`
	Transitions int64            `json:"transitions"`
	FilesMoved  int64            `json:"files_moved"`     // work files with a successful move
	Tool        string           `json:"tool,omitempty"`  // "e4defrag": Results are what the tool printed
	Donor       string           `json:"donor,omitempty"` // fresh, shared or inplace
	Evictions   int64            `json:"evictions"`       // ranges dropped from the page cache before a move
	MovesPerS   float64          `json:"moves_per_s"`
	Rejournals  int64            `json:"rejournals"`
	BlocksMoved int64            `json:"blocks_moved"`
	Elapsed     float64          `json:"elapsed_s"`
	// PerSecond: moved, refused (any errno) and transitions per second.
	PerSecond *PerSecond `json:"per_second,omitempty"`
}

// VerifyResult is one verify pass (live, dropcache, remount).
type VerifyResult struct {
	Phase    string            `json:"phase"`
	Blocks   int64             `json:"blocks"`
	Counts   map[string]int64  `json:"counts"`
	BadTotal int64             `json:"bad_total"`
	Bad      []json.RawMessage `json:"bad,omitempty"`
}

// FsckResult is e2fsck -fn on the unmounted scratch disk.
type FsckResult struct {
	Exit  int  `json:"exit"`
	Clean bool `json:"clean"`
}

// Moved sums successful moves over the defrag workers.
func (r *RunRecord) Moved() int64 {
	return r.defragSum(func(d DefragResult) int64 { return d.Results["moved"] })
}

// Refused sums results with the given errno name.
func (r *RunRecord) Refused(errno string) int64 {
	return r.defragSum(func(d DefragResult) int64 { return d.Results[errno] })
}

// Transitions sums the a_ops swaps the workload caused.
func (r *RunRecord) Transitions() int64 {
	return r.defragSum(func(d DefragResult) int64 { return d.Transitions })
}

// FilesMoved is the most work files one defrag worker moved: a lower bound
// on the distinct files moved (workers may share files).
func (r *RunRecord) FilesMoved() int64 {
	var n int64
	for _, d := range r.Defrag {
		n = max(n, d.FilesMoved)
	}
	return n
}

// Writes sums completed block writes over the writers.
func (r *RunRecord) Writes() int64 {
	var n int64
	for _, w := range r.Writers {
		n += w.Writes
	}
	return n
}

// ReadbackBad sums the writers' read-backs that missed their last write.
func (r *RunRecord) ReadbackBad() int64 {
	var n int64
	for _, w := range r.Writers {
		n += w.ReadbackBad
	}
	return n
}

// BadBlocks is the most bad blocks one verify pass found. The passes
// (live, dropcache, remount) check the same blocks, so a lost block is
// usually bad in each of them: their sum would count it up to three times.
func (r *RunRecord) BadBlocks() int64 {
	var n int64
	for _, v := range r.Verify {
		n = max(n, v.BadTotal)
	}
	return n
}

func (r *RunRecord) defragSum(f func(DefragResult) int64) int64 {
	var n int64
	for _, d := range r.Defrag {
		n += f(d)
	}
	return n
}

// PowerCutResult is what a power-cut run recorded (run.json power_cut).
type PowerCutResult struct {
	AfterS           float64 `json:"after_s"`           // the seeded moment, from the start of the workload
	CutS             float64 `json:"cut_s"`             // when the cut came, same origin
	ReplayBootS      float64 `json:"replay_boot_s"`     // QEMU start to SSH, second boot
	JournalRecovered bool    `json:"journal_recovered"` // the mount said "recovery complete"
	AckRecords       uint64  `json:"ack_records"`       // syncs acknowledged before the cut
	AckedBlocks      int     `json:"acked_blocks"`      // blocks with an acknowledged generation > 0
	MaxAckedGen      int64   `json:"max_acked_gen"`
}

// IomapActivity is what the tracepoints saw on the scratch file system:
// evidence that the case's mount option really put the work files on the
// iomap buffered I/O path, not only that mount accepted it, and whether
// large folios were used at all.
type IomapActivity struct {
	Dev     string   `json:"dev"`     // major:minor of the scratch file system
	Enabled []string `json:"enabled"` // iomap events this kernel has and we counted
	Missing []string `json:"missing,omitempty"`
	// Events recorded by the ring buffer (kept + overwritten), exact.
	Setup    int64 `json:"setup_events"`    // mount to the end of prepare (files written and fsynced)
	Workload int64 `json:"workload_events"` // during the workload phase
	// A breakdown by event of what the buffer still held at the end: a
	// lower bound per event once the buffer wrapped.
	InBuffer map[string]int64 `json:"in_buffer,omitempty"`
	// Page-cache folios added on the scratch file system from mount to the
	// end of the workload (exact), those above order 0 (exact), and the
	// orders of the latter still in their buffer (a lower bound per order).
	Folios           int64            `json:"folios_added"`
	LargeFolios      int64            `json:"large_folios_added"`
	LargeFolioOrders map[string]int64 `json:"large_folio_orders,omitempty"`
}

// OnlyOrderZero says the run added page-cache folios on the scratch file
// system but none above order 0: whatever the kernel says about large
// folios, this run did not exercise them.
func (a *IomapActivity) OnlyOrderZero() bool {
	return a != nil && a.Folios > 0 && a.LargeFolios == 0
}

// Summary is one line for logs.
func (a *IomapActivity) Summary() string {
	if a == nil {
		return ""
	}
	s := fmt.Sprintf("buffered iomap events on %s: %d in setup, %d in workload; folios added %d, above order 0 %d",
		a.Dev, a.Setup, a.Workload, a.Folios, a.LargeFolios)
	if len(a.LargeFolioOrders) > 0 {
		s += " (orders " + countList(a.LargeFolioOrders) + ")"
	}
	if a.OnlyOrderZero() {
		s += ": only order-0 folios, large folios not exercised"
	}
	return s
}

// countList renders a count map as "k n, k n" in key order.
func countList(m map[string]int64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}
