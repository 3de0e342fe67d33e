package harness

import (
	"encoding/json"
	"time"

	"patchbay/safefile"
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
	Start        string   `json:"start,omitempty"`
	Snapshot     string   `json:"snapshot,omitempty"`
	WorkloadSecs float64  `json:"workload_seconds,omitempty"` // wall time of the workload phase
	Outcome      Outcome  `json:"outcome"`
	Reasons      []string `json:"reasons"`
	Dir          string   `json:"dir"` // relative to the results directory
	QMPEvents    []string `json:"qmp_events,omitempty"`
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

// writeJSON writes v to path atomically (see writeFileAtomic).
func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(path, append(data, '\n'))
}

// writeFileAtomic writes data to a temporary file of a unique name in
// path's directory (two writers never share it), syncs it, renames it over
// path and syncs the directory: after a crash path holds the old or the
// new content, never a torn or empty file.
func writeFileAtomic(path string, data []byte) error {
	return safefile.WriteAtomic(path, data, 0o644)
}
