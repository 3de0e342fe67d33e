package triage

import (
	"regexp"
	"strings"
)

const (
	maxLocks      = 64
	maxChain      = 16
	maxChainStack = 32
)

var (
	// reLockLine: "ffff888012345678 (&ei->i_data_sem){++++}-{3:3}, at: ext4_map_blocks+0x2b0/0x1a30",
	// also as " #1: ffff... (...)..." in held-lock lists and without the address.
	// The name is lazy up to the first "){": class names nest parentheses,
	// as in "((wq_completion)ext4-rsv-conversion)".
	reLockLine = regexp.MustCompile(`^\s*(?:#\d+:\s+)?(?:[0-9a-f]{8,16}\s+)?\((.+?)\)(\{[^}]*\}(?:-\{[^}]*\})?)(?:, at: (?:\[<[0-9a-f]+>\]\s*)?(\S+))?`)
	// reChainLink: "-> #1 (&ei->i_data_sem){++++}-{3:3}:"
	reChainLink = regexp.MustCompile(`^-> #(\d+) \((.+?)\)(\{[^}]*\}(?:-\{[^}]*\})?):`)
	// reHeldBy: "3 locks held by fsstress/1234:"
	reHeldBy = regexp.MustCompile(`^\d+ locks? held by (.+)/\d+:`)
	// reTaskDoes: "fsstress/1234 is trying to acquire lock:", "swapper/0/0 [HC0[0]:SC1[1]:HE1:SE0] takes:",
	// "bash/70 [HC0[0]:SC0[2]:HE1:SE0] is trying to acquire:" (irq-safe -> irq-unsafe order), ...
	reTaskDoes     = regexp.MustCompile(`^(\S.*?)/\d+(?: \[.*\])? (is trying to acquire(?: lock)?:|takes:|is trying to lock:|just changed the state of lock:|is freeing memory|is leaving the kernel|is trying to release lock \((.+)\) at:)`)
	reInstanceName = regexp.MustCompile(`#\d+`)
)

// parseLockdep collects the lock lines, the task and the dependency chain
// of a lockdep report. body starts at the header line.
func parseLockdep(body []string) *Lockdep {
	ld := &Lockdep{Header: strings.TrimRight(trimReportPrefix(body[0]), " ")}
	role, holder := RoleOther, ""
	var link *ChainLink
	pendingRelease := -1 // index in ld.Locks waiting for its "at:" line
	for _, s := range body[1:] {
		if s == "stack backtrace:" || isCallTrace(s) {
			break
		}
		if link != nil {
			if f, ok := parseFrame(s); ok && strings.HasPrefix(s, " ") {
				if len(link.Stack) < maxChainStack {
					link.Stack = append(link.Stack, f.fn)
				}
				continue
			}
			link.At = blame(framesOf(link.Stack))
			link = nil
		}
		if pendingRelease >= 0 {
			if f, ok := parseFrame(s); ok {
				ld.Locks[pendingRelease].At = f.fn
			}
			pendingRelease = -1
			continue
		}
		if m := reChainLink.FindStringSubmatch(s); m != nil {
			if len(ld.Chain) < maxChain {
				ld.Chain = append(ld.Chain, ChainLink{Depth: atoi(m[1]), Name: lockName(m[2]), Raw: m[2], Usage: m[3]})
				link = &ld.Chain[len(ld.Chain)-1]
			}
			continue
		}
		if m := reTaskDoes.FindStringSubmatch(s); m != nil {
			if ld.Task == "" {
				ld.Task = m[1]
			}
			switch {
			case strings.HasPrefix(m[2], "is trying to release lock"):
				if len(ld.Locks) < maxLocks {
					ld.Locks = append(ld.Locks, LockClass{Name: lockName(m[3]), Raw: m[3], Role: RoleReleasing})
					pendingRelease = len(ld.Locks) - 1
				}
			case strings.HasPrefix(m[2], "just changed"):
				role = RoleChanged
			case strings.HasPrefix(m[2], "is freeing"), strings.HasPrefix(m[2], "is leaving"):
				role = RoleHeld
				holder = m[1]
			default:
				role = RoleAcquiring
			}
			continue
		}
		if m := reHeldBy.FindStringSubmatch(s); m != nil {
			role, holder = RoleHeld, m[1]
			if ld.Task == "" {
				// Reports without a "comm/pid is ..." line (suspicious
				// RCU usage) list the current task's locks.
				ld.Task = m[1]
			}
			continue
		}
		switch {
		case strings.HasPrefix(s, "but task is already holding lock"),
			strings.HasPrefix(s, "and this task is already holding:"):
			role, holder = RoleHolding, ""
			continue
		}
		m := reLockLine.FindStringSubmatch(s)
		if m == nil {
			// A role covers the lock lines right after its line: any
			// other text ("which would create a new lock dependency:",
			// "but this lock took another, ...", a blank) ends it.
			role, holder = RoleOther, ""
			continue
		}
		if len(ld.Locks) < maxLocks {
			lc := LockClass{Name: lockName(m[1]), Raw: m[1], Usage: m[2], Role: role, At: cleanFunc(m[3])}
			if role == RoleHeld {
				lc.Holder = holder
			}
			ld.Locks = append(ld.Locks, lc)
		}
	}
	if link != nil {
		link.At = blame(framesOf(link.Stack))
	}
	return ld
}

// lockTitle titles a lockdep report after the function taking the first
// lock it names (the lock being acquired), else after its stack backtrace.
func lockTitle(prefix string, fromLocks bool) func(*report) string {
	return func(r *report) string {
		if fromLocks && r.lockdep != nil {
			for _, l := range r.lockdep.Locks {
				if l.At != "" && !isInfra(l.At) {
					return prefix + " in " + l.At
				}
			}
		}
		return with(prefix, r.stackFunc())
	}
}

func framesOf(fns []string) []frame {
	out := make([]frame, len(fns))
	for i, f := range fns {
		out[i] = frame{fn: f, reliable: true}
	}
	return out
}

// lockName drops "#N" class-instance suffixes, which depend on the order
// locks were first seen: "sb_writers#3" -> "sb_writers".
func lockName(s string) string { return reInstanceName.ReplaceAllString(s, "") }

func trimReportPrefix(s string) string {
	// "[ BUG: Invalid wait context ]"
	if strings.HasPrefix(s, "[ ") && strings.HasSuffix(s, " ]") {
		s = s[2 : len(s)-2]
	}
	for _, p := range [...]string{"WARNING: ", "BUG: ", "INFO: "} {
		if strings.HasPrefix(s, p) {
			return s[len(p):]
		}
	}
	return s
}

func atoi(s string) int {
	n := 0
	for i := 0; i < len(s) && i < 9; i++ {
		n = n*10 + int(s[i]-'0')
	}
	return n
}
