// Package triage turns kernel console or dmesg text into findings: one per
// distinct crash, warning, lockdep report, hang, ext4/jbd2 error or reboot,
// each with a normalized title so the same bug in two runs gets the same
// title. It is a pure function of its input and uses the standard library
// only.
//
// Bounds, so that any input parses in time linear in its size:
//   - at most MaxFindings findings; findings with the same kind and title
//     are reported once (the first occurrence);
//   - a report body holds at most MaxReportLines lines and MaxReportBytes
//     bytes; each input line is cut to MaxLineBytes before anything else;
//   - titles are cut to MaxTitleBytes;
//   - a Lockdep summary holds at most 64 locks and 16 chain links of at most
//     32 frames each.
package triage

// Caps on what Parse returns (see the package comment).
const (
	MaxFindings    = 100
	MaxReportLines = 400
	MaxReportBytes = 64 << 10
	MaxLineBytes   = 4096
	MaxTitleBytes  = 200
)

// Kind is the class of a finding.
type Kind string

// The kinds Parse produces.
const (
	KindBug           Kind = "BUG"            // "BUG: ..." oopses and debug checks, KFENCE/KMSAN/KCSAN
	KindKASAN         Kind = "KASAN"          // "BUG: KASAN: ..."
	KindKernelBug     Kind = "kernel-BUG"     // "kernel BUG at file:line!"
	KindWarning       Kind = "WARNING"        // "WARNING: CPU: n PID: n at file:line func"
	KindGPF           Kind = "GPF"            // "general protection fault"
	KindInvalidOpcode Kind = "invalid-opcode" // "invalid opcode:" not caused by a kernel BUG
	KindUBSAN         Kind = "UBSAN"          // "UBSAN: ..."
	KindPanic         Kind = "panic"          // "Kernel panic - not syncing:" that is not the consequence of another finding
	KindLockdep       Kind = "lockdep"        // lockdep and RCU-lockdep reports
	KindHungTask      Kind = "hung-task"      // "INFO: task ... blocked for more than N seconds."
	KindRCUStall      Kind = "rcu-stall"      // "rcu: INFO: rcu_preempt detected stalls" / "self-detected stall"
	KindSoftLockup    Kind = "soft-lockup"    // "BUG: soft lockup - CPU#n stuck", "Watchdog detected hard LOCKUP"
	KindExt4Error     Kind = "ext4-error"     // "EXT4-fs error (device ...)" and ext4 data-loss messages
	KindExt4Warning   Kind = "ext4-warning"   // "EXT4-fs warning (device ...)"
	KindJBD2Error     Kind = "jbd2-error"     // "JBD2: ..." errors, "Aborting journal on device"
	KindReboot        Kind = "reboot"         // a second "Linux version" banner, "reboot: Restarting system", "sysrq: Resetting"
	KindLockdepOff    Kind = "lockdep-off"    // lockdep stopped checking: later lock bugs go unreported
)

// Titles of the reboot findings.
const (
	TitleUnexpectedReboot = "unexpected reboot"         // a new boot banner with no panic or reboot request before it
	TitleRestart          = "reboot: Restarting system" // the kernel was asked to restart (reboot(2))
	TitleSysrqReset       = "sysrq: Resetting"          // sysrq-b: an immediate reset, without "reboot: " messages
)

// Finding is one report found in the console text.
type Finding struct {
	Kind    Kind     `json:"kind"`
	Title   string   `json:"title"`  // normalized: same bug in two runs => same title
	Line    int      `json:"line"`   // 1-based input line where the report starts (its "cut here" or "====" frame when there is one)
	Report  string   `json:"report"` // the report's raw lines (CRs trimmed), capped
	Phase   string   `json:"phase"`  // run phase it appeared in: boot, setup, workload, verify
	Lockdep *Lockdep `json:"lockdep,omitempty"`
	// Notes are consequences printed after the report, folded into it
	// rather than listed as findings of their own: e.g. "INFO: lockdep is
	// turned off" after a lockdep report (lockdep stops at its first one).
	Notes []string `json:"notes,omitempty"`
}

// Lockdep is the structured part of a lockdep report.
type Lockdep struct {
	Header string      `json:"header"`          // e.g. "possible circular locking dependency detected"
	Task   string      `json:"task,omitempty"`  // comm of the task the report is about, PID dropped
	Locks  []LockClass `json:"locks,omitempty"` // lock lines in order of appearance
	Chain  []ChainLink `json:"chain,omitempty"` // "-> #N" links as printed (#N down to #0)
}

// Roles a LockClass can have in a report.
const (
	RoleAcquiring = "acquiring" // "is trying to acquire lock:", "takes:", "is trying to lock:"
	RoleHolding   = "holding"   // "but task is already holding lock:", "and this task is already holding:"
	RoleHeld      = "held"      // an entry of "N locks held by comm/pid:"
	RoleReleasing = "releasing" // "is trying to release lock (...) at:"
	RoleChanged   = "changed"   // "just changed the state of lock:"
	RoleOther     = "other"     // any other lock line (e.g. "but this lock was taken by another ...")
)

// LockClass is one lock line of a lockdep report.
type LockClass struct {
	Name   string `json:"name"`             // class name with "#N" instance suffixes dropped: "&ei->i_data_sem", "sb_writers"
	Raw    string `json:"raw"`              // class name as printed: "sb_writers#3"
	Usage  string `json:"usage,omitempty"`  // usage and wait-type bits as printed: "{++++}-{3:3}"
	Role   string `json:"role,omitempty"`   // one of the Role constants
	Holder string `json:"holder,omitempty"` // comm of the holding task (RoleHeld), PID dropped
	At     string `json:"at,omitempty"`     // function that took (or is taking) the lock, offsets dropped
}

// ChainLink is one "-> #N (lock){...}:" entry of a circular dependency chain:
// the stack shows where Lock was taken while the next link's lock was held.
type ChainLink struct {
	Depth int      `json:"depth"` // the N of "-> #N"
	Name  string   `json:"name"`  // normalized class name
	Raw   string   `json:"raw"`   // class name as printed
	Usage string   `json:"usage,omitempty"`
	At    string   `json:"at,omitempty"`    // first frame outside lockdep and lock primitives: the function that took the lock
	Stack []string `json:"stack,omitempty"` // function names of the link's stack, offsets dropped
}

// Severe reports whether the finding counts as a kernel crash or bug. Every
// kind is severe except ext4-warning (ext4 complains, the file system is
// still consistent), lockdep-off (lost coverage, not a bug by itself) and a
// requested restart (reboot(2), sysrq-b); an unexpected reboot (a new boot
// banner without a panic or a reboot request before it, e.g. a triple
// fault) is severe.
// ext4-error and jbd2-error are severe: callers that inject I/O errors on
// purpose should filter them by kind.
func (f Finding) Severe() bool {
	switch f.Kind {
	case KindExt4Warning, KindLockdepOff:
		return false
	case KindReboot:
		return f.Title == TitleUnexpectedReboot
	}
	return true
}
