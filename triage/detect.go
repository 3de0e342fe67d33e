package triage

import (
	"regexp"
	"strings"
)

// style says where a report's body ends.
type style int

const (
	// styleSingle: the header line is the whole report.
	styleSingle style = iota
	// styleTrace: an oops-like report; it ends at "---[ end ...", or where
	// its call trace stops. Without a call trace in the first maxPreTrace
	// lines it is a one-line report.
	styleTrace
	// styleLockdep: like styleTrace, but the call trace ("stack
	// backtrace:") comes after an arbitrarily long dependency chain.
	styleLockdep
	// styleFramed: KASAN-like; it ends at the closing "=====" line.
	styleFramed
)

// maxPreTrace is how far a styleTrace report may run before its call trace.
const maxPreTrace = 100

// matcher recognizes the first line of one report type.
type matcher struct {
	kind     Kind
	prefixes []string       // the message starts with one of them...
	contains string         // ...or, without prefixes, contains this
	re       *regexp.Regexp // and then also matches re, when set
	style    style
	title    func(r *report) string

	transparent bool // a consequence or side note: never ends another report, found even inside one
	oopsLine    bool // an "Oops:"/"invalid opcode:" line, part of a preceding BUG report
	absorbOops  bool // this report's oops line follows its header
	allCallers  bool // printed from several contexts (NMI backtraces of other CPUs)
	lockdep     bool // fill Finding.Lockdep
	banner      bool // "Linux version": a boot, not a report
	// heldListEnds: the report ends with its held-locks list (no backtrace).
	heldListEnds bool
}

func pre(p ...string) []string { return p }

// matchers is ordered: specific headers come before generic ones.
var matchers = []*matcher{
	// lockdep, all framed by "=====" and ending with "stack backtrace:".
	lockdepM("WARNING: possible circular locking dependency detected", "possible deadlock", true),
	lockdepM("WARNING: possible recursive locking detected", "possible deadlock", true),
	lockdepM("WARNING: possible irq lock inversion dependency detected", "possible deadlock", true),
	{kind: KindLockdep, prefixes: pre("WARNING: HARDIRQ-safe", "WARNING: SOFTIRQ-safe"),
		re:    regexp.MustCompile(`^WARNING: (?:HARD|SOFT)IRQ-safe -> (?:HARD|SOFT)IRQ-unsafe lock order detected`),
		style: styleLockdep, lockdep: true, title: lockTitle("possible deadlock", true)},
	lockdepM("WARNING: inconsistent lock state", "inconsistent lock state", true),
	lockdepM("WARNING: suspicious RCU usage", "suspicious RCU usage", false),
	lockdepM("WARNING: bad unlock balance detected!", "bad unlock balance", true),
	lockdepM("WARNING: bad contention detected!", "bad contention", true),
	lockdepM("WARNING: held lock freed!", "held lock freed", true),
	lockdepM("BUG: held lock freed!", "held lock freed", true),
	{kind: KindLockdep, prefixes: pre("WARNING: lock held when returning to user space!"), style: styleLockdep,
		lockdep: true, heldListEnds: true, title: lockTitle("lock held when returning to user space", true)},
	lockdepM("WARNING: Nested lock was not taken", "nested lock was not taken", true),
	lockdepM("[ BUG: Invalid wait context ]", "invalid wait context", true),
	lockdepM("INFO: trying to register non-static key", "trying to register non-static key", false),
	lockdepM("BUG: looking up invalid subclass", "looking up invalid subclass", false),
	{kind: KindLockdep, prefixes: pre("BUG: MAX_"), re: regexp.MustCompile(`^BUG: (MAX_[A-Z_]+) too low!`),
		style: styleLockdep, title: func(r *report) string { return "BUG: " + r.sub[1] + " too low!" }},

	// lockdep stopped checking.
	lockdepOff("INFO: lockdep is turned off", "INFO: lockdep is turned off"),
	lockdepOff("Disabling lock debugging due to kernel taint", "Disabling lock debugging due to kernel taint"),
	lockdepOff("turning off the locking correctness validator", "turning off the locking correctness validator"),

	// Sanitizers.
	{kind: KindKASAN, prefixes: pre("BUG: KASAN: "), re: regexp.MustCompile(`^BUG: (KASAN): (.+?)(?: in (\S+)(.*))?$`),
		style: styleFramed, title: sanitizerTitle},
	{kind: KindBug, prefixes: pre("BUG: KFENCE: ", "BUG: KMSAN: ", "BUG: KCSAN: "),
		re:    regexp.MustCompile(`^BUG: (KFENCE|KMSAN|KCSAN): (.+?)(?: in (\S+)(.*))?$`),
		style: styleFramed, title: sanitizerTitle},

	// Lockups.
	{kind: KindSoftLockup, prefixes: pre("BUG: soft lockup"), style: styleTrace,
		title: func(r *report) string { return with("BUG: soft lockup", r.ripOrStack()) }},
	{kind: KindHungTask, prefixes: pre("INFO: task "),
		re:    regexp.MustCompile(`^INFO: task .*:\d+ blocked for more than \d+ seconds`),
		style: styleTrace, title: func(r *report) string { return with("INFO: task hung", r.stackFunc()) }},
	{kind: KindRCUStall, prefixes: pre("rcu: INFO: rcu", "INFO: rcu"),
		re:    regexp.MustCompile(`^(?:rcu: )?INFO: rcu\w* (?:detected|self-detected) `),
		style: styleTrace, allCallers: true,
		title: func(r *report) string { return with("INFO: rcu detected stall", r.ripOrStack()) }},

	// Oopses and debug checks.
	{kind: KindBug, prefixes: pre("BUG: kernel NULL pointer dereference"), style: styleTrace, absorbOops: true,
		title: ripTitle("BUG: kernel NULL pointer dereference")},
	{kind: KindBug, prefixes: pre("BUG: unable to handle page fault"), style: styleTrace, absorbOops: true,
		title: ripTitle("BUG: unable to handle page fault")},
	{kind: KindBug, prefixes: pre("BUG: unable to handle kernel "),
		re:    regexp.MustCompile(`^BUG: unable to handle kernel (paging request|NULL pointer dereference)`),
		style: styleTrace, absorbOops: true,
		title: func(r *report) string { return with("BUG: unable to handle kernel "+r.sub[1], r.ripOrStack()) }},
	{kind: KindBug, prefixes: pre("BUG: using "), re: regexp.MustCompile(`^BUG: using (\S+) in preemptible`),
		style: styleTrace,
		title: func(r *report) string { return with("BUG: using "+r.sub[1]+" in preemptible code", r.stackFunc()) }},
	stackBug("BUG: scheduling while atomic"),
	stackBug("BUG: sleeping function called from invalid context"),
	stackBug("BUG: Bad page state"),
	{kind: KindBug, prefixes: pre("BUG: "), style: styleTrace, absorbOops: true, title: genericBugTitle},
	{kind: KindKernelBug, prefixes: pre("kernel BUG at "), re: regexp.MustCompile(`^kernel BUG at ([^\s!]+)`),
		style: styleTrace, absorbOops: true,
		title: func(r *report) string {
			if f := r.ripOrStack(); f != "" {
				return "kernel BUG in " + f
			}
			return "kernel BUG at " + r.sub[1]
		}},
	{kind: KindGPF, prefixes: pre("general protection fault", "Oops: general protection fault"), style: styleTrace,
		title: ripTitle("general protection fault")},
	{kind: KindInvalidOpcode, prefixes: pre("invalid opcode: ", "Oops: invalid opcode: "), style: styleTrace, oopsLine: true,
		title: ripTitle("invalid opcode")},
	{kind: KindBug, prefixes: pre("Oops: "), re: regexp.MustCompile(`^Oops: (?:Oops: )?(?:(.+?): )?[0-9a-f]{4} \[#\d+\]`),
		style: styleTrace, oopsLine: true,
		title: func(r *report) string {
			if r.sub[1] != "" {
				return with("Oops: "+r.sub[1], r.ripOrStack())
			}
			return with("Oops", r.ripOrStack())
		}},
	{kind: KindWarning, prefixes: pre("WARNING: "),
		re:    regexp.MustCompile(`^WARNING: (?:CPU: \d+ PID: \d+ )?at (\S+) (\S+)|^WARNING: (\S+:\d+) at ([^\s,]+),? CPU#`),
		style: styleTrace, title: warningTitle},
	{kind: KindUBSAN, prefixes: pre("UBSAN: "), re: regexp.MustCompile(`^UBSAN: (.+?)(?: in (\S+))?$`),
		style: styleTrace, title: ubsanTitle},
	{kind: KindPanic, prefixes: pre("Kernel panic - not syncing: "), style: styleTrace, transparent: true,
		title: func(r *report) string {
			return "kernel panic: " + cutParens(strings.TrimPrefix(r.head, "Kernel panic - not syncing: "))
		}},

	// File systems.
	{kind: KindExt4Error, prefixes: pre("EXT4-fs error ("),
		re:    regexp.MustCompile(`^EXT4-fs error \([^)]*\)(?::| in) ([\w.]+)`),
		title: func(r *report) string { return "EXT4-fs error in " + cleanFunc(r.sub[1]) }},
	{kind: KindExt4Warning, prefixes: pre("EXT4-fs warning ("),
		re:    regexp.MustCompile(`^EXT4-fs warning \([^)]*\)(?::| in) ([\w.]+)`),
		title: func(r *report) string { return "EXT4-fs warning in " + cleanFunc(r.sub[1]) }},
	{kind: KindExt4Error, prefixes: pre("EXT4-fs ("),
		re:    regexp.MustCompile(`^EXT4-fs \([^)]*\): (failed to convert unwritten extents to written extents|Delayed block allocation failed|I/O error while writing superblock)`),
		title: func(r *report) string { return "EXT4-fs error: " + r.sub[1] }},
	{kind: KindJBD2Error, prefixes: pre("JBD2: "),
		re:    regexp.MustCompile(`^JBD2: (.*(?i:error|corrupt|abort|invalid|fail|spotted dirty|unrecognised|cannot|can't|no valid|bad |unable|checksum|mismatch|lost).*)`),
		title: func(r *report) string { return "JBD2: " + jbd2Msg(r.sub[1]) }},
	{kind: KindJBD2Error, prefixes: pre("Aborting journal on device"),
		title: func(*report) string { return "JBD2: Aborting journal" }},

	// Reboots: a new boot banner, or the kernel announcing a restart it
	// was asked for.
	{kind: KindReboot, prefixes: pre("Linux version "), re: regexp.MustCompile(`^Linux version \d`), banner: true},
	{kind: KindReboot, prefixes: pre(TitleRestart), title: func(*report) string { return TitleRestart }},
	// sysrq-b: emergency_restart() without the "reboot: " messages.
	{kind: KindReboot, prefixes: pre(TitleSysrqReset), title: func(*report) string { return TitleSysrqReset }},

	// Last: substring matches.
	// "watchdog: CPU1: Watchdog detected hard LOCKUP on cpu 1": a hang like
	// a soft lockup; the buddy detector prints the stuck CPU's registers
	// from that CPU, under another caller tag.
	{kind: KindSoftLockup, contains: "Watchdog detected hard LOCKUP", style: styleTrace, allCallers: true,
		title: func(r *report) string { return with("hard LOCKUP", r.ripOrStack()) }},
	{kind: KindLockdepOff, contains: "debug_locks off", transparent: true,
		title: func(*report) string { return "debug_locks off" }},
}

func lockdepM(prefix, title string, fromLocks bool) *matcher {
	return &matcher{kind: KindLockdep, prefixes: pre(prefix), style: styleLockdep, lockdep: true,
		title: lockTitle(title, fromLocks)}
}

func lockdepOff(prefix, title string) *matcher {
	return &matcher{kind: KindLockdepOff, prefixes: pre(prefix), transparent: true,
		title: func(*report) string { return title }}
}

func stackBug(prefix string) *matcher {
	return &matcher{kind: KindBug, prefixes: pre(prefix), style: styleTrace, absorbOops: true,
		title: func(r *report) string { return with(prefix, r.stackFunc()) }}
}

// detect returns the matcher for a report header, and the header with
// "watchdog: " style prefixes removed.
func detect(text string) (*matcher, []string, string) {
	if text == "" {
		return nil, nil, ""
	}
	head := text
	for _, p := range [...]string{"NMI watchdog: ", "watchdog: "} {
		if strings.HasPrefix(head, p) {
			head = head[len(p):]
			break
		}
	}
	for _, m := range matchers {
		if !m.hit(head) {
			continue
		}
		if m.re == nil {
			return m, nil, head
		}
		if sub := m.re.FindStringSubmatch(head); sub != nil {
			return m, sub, head
		}
	}
	return nil, nil, ""
}

func (m *matcher) hit(s string) bool {
	if len(m.prefixes) == 0 {
		return strings.Contains(s, m.contains)
	}
	for _, p := range m.prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}
