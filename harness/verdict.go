package harness

import (
	"fmt"

	"patchbay/casespec"
	"patchbay/record"
	"patchbay/triage"
	"patchbay/workload/guestcmd"
)

// RunStatus is how the run itself went, apart from what it measured.
type RunStatus struct {
	Interrupted bool   // the user stopped it
	Infra       string // the host failed (non-empty: why)
	Boot        string // no SSH before the deadline (non-empty: why)
	Timeout     string // a phase overran its deadline with the VM alive
	VMDied      string // QEMU went away or SSH was lost mid-run
	Panicked    bool   // QEMU reported GUEST_PANICKED (pvpanic)
	Rebooted    bool   // the guest reset itself mid-run (QMP SHUTDOWN reason guest-reset)
	Setup       string // the case's setup did not take effect (e.g. +j not set)
	Incomplete  string // a workload or verify step produced no result
}

// hangKinds are findings that mean the kernel stopped making progress.
var hangKinds = map[triage.Kind]bool{"hung-task": true, "rcu-stall": true, "soft-lockup": true}

// fsKinds are the file system reporting damage it found: evidence of lost
// or corrupted data (a fail), not the kernel crashing.
var fsKinds = map[triage.Kind]bool{"ext4-error": true, "ext4-warning": true, "jbd2-error": true}

// Judge sets rec.Outcome and rec.Reasons from the run status, the findings
// and the variant's expectations. Precedence: interrupted, infra-error,
// boot-error, crash, hang, fail, pass. Every broken expectation is listed as
// a reason.
func Judge(rec *record.RunRecord, st RunStatus, exp casespec.Expectation) {
	rec.Reasons = nil
	set := func(o record.Outcome, why ...string) {
		rec.Outcome = o
		rec.Reasons = append(rec.Reasons, why...)
	}
	var crashes, hangs []string
	for _, f := range rec.Findings {
		switch {
		case hangKinds[f.Kind]:
			hangs = append(hangs, f.Title)
		case fsKinds[f.Kind]:
		case f.Severe():
			crashes = append(crashes, f.Title)
		}
	}
	switch {
	case st.Interrupted:
		set(record.Interrupted, "interrupted by the user")
		return
	case st.Infra != "":
		set(record.InfraError, st.Infra)
		return
	case st.Boot != "":
		// Like syzkaller: whatever the kernel did before the guest was up
		// (a bad root=, a panic in a patched mount path) is a boot error,
		// with the console's findings as the reasons.
		set(record.BootError, append([]string{st.Boot}, crashes...)...)
		return
	case len(crashes) > 0:
		set(record.Crash, crashes...)
		return
	case st.Panicked:
		// pvpanic is the kernel's own word that it panicked, even when the
		// console text was not recognized.
		set(record.Crash, "guest panicked (pvpanic) without a recognized report on the console")
		return
	case st.Rebooted:
		// Nothing in a run asks the guest to reboot: a reset mid-run is the
		// kernel's doing (reboot from a bug, a triple fault).
		set(record.Crash, "unexpected reboot: the guest reset itself mid-run")
		return
	case len(hangs) > 0:
		set(record.Hang, hangs...)
		return
	case st.Timeout != "":
		set(record.Hang, st.Timeout)
		return
	case st.VMDied != "":
		// The VM went away without a recognizable splat: not a kernel
		// failure we can name, and not a pass.
		set(record.InfraError, st.VMDied)
		return
	}
	// A run that did not get through its phases has no measurements to
	// hold against the expectations: say only what stopped it.
	switch {
	case st.Setup != "":
		set(record.Fail, "setup: "+st.Setup)
		return
	case st.Incomplete != "":
		set(record.Fail, "incomplete: "+st.Incomplete)
		return
	}
	broken := checkExpectation(rec, exp)
	if len(broken) > 0 {
		set(record.Fail, broken...)
		return
	}
	set(record.Pass)
	if rec.BufferedIomap.OnlyOrderZero() {
		// Still a pass, but not a plain one: the report shows why.
		rec.Reasons = append(rec.Reasons, OrderZeroOnly)
	}
}

// OrderZeroOnly is the reason a pass carries when the run added page-cache
// folios but none above order 0: large folios were not exercised.
const OrderZeroOnly = "only order-0 folios: large folios not exercised"

// checkExpectation lists every expectation the run broke.
func checkExpectation(rec *record.RunRecord, exp casespec.Expectation) []string {
	var broken []string
	atLeast := func(name string, got int64, min *int) {
		if min != nil && got < int64(*min) {
			broken = append(broken, fmt.Sprintf("%s = %d, expected at least %d", name, got, *min))
		}
	}
	atMost := func(name string, got int64, max *int) {
		if max != nil && got > int64(*max) {
			broken = append(broken, fmt.Sprintf("%s = %d, expected at most %d", name, got, *max))
		}
	}
	atLeast("moves", rec.Moved(), exp.MinMoved)
	atMost("moves", rec.Moved(), exp.MaxMoved)
	atLeast("EOPNOTSUPP refusals", rec.Refused("EOPNOTSUPP"), exp.MinRefusedEOPNOTSUPP)
	atLeast("a_ops transitions", rec.Transitions(), exp.MinTransitions)
	atLeast("work files moved", rec.FilesMoved(), exp.MinFilesMoved)
	atMost("bad blocks", rec.BadBlocks(), exp.MaxBadBlocks)
	if exp.MaxBadBlocks != nil {
		for _, w := range rec.Writers {
			if w.ReadbackBad > 0 {
				first := ""
				if len(w.BadReads) > 0 {
					first = ": first " + w.BadReads[0]
				}
				broken = append(broken, fmt.Sprintf("writer %d (%s): %d of %d read-backs did not return the last write%s",
					w.ID, w.Mode, w.ReadbackBad, w.Readbacks, first))
			}
		}
		for _, v := range rec.Verify {
			if v.BadTotal > 0 {
				counts := nonOK(v.Counts)
				if v.Phase == guestcmd.ReplayPhase {
					delete(counts, "future") // after a power cut, later than acknowledged is fine
				}
				broken = append(broken, fmt.Sprintf("verify %s: %d bad blocks %v", v.Phase, v.BadTotal, counts))
			}
		}
	}
	if exp.FsckClean {
		switch {
		case rec.Fsck == nil:
			broken = append(broken, "e2fsck did not run")
		case !rec.Fsck.Clean:
			broken = append(broken, fmt.Sprintf("e2fsck -fn exit %d: file system not clean", rec.Fsck.Exit))
		}
	}
	if exp.NoFindings {
		// Crashes and hangs were classified before; what is left (ext4
		// errors and warnings, lockdep turned off, ...) still fails.
		for _, f := range rec.Findings {
			broken = append(broken, fmt.Sprintf("finding: %s (%s)", f.Title, f.Kind))
		}
	}
	for _, w := range rec.Writers {
		for _, e := range w.Errors {
			broken = append(broken, fmt.Sprintf("writer %d (%s): %s", w.ID, w.Mode, e))
		}
	}
	return broken
}

func nonOK(counts map[string]int64) map[string]int64 {
	out := map[string]int64{}
	for k, v := range counts {
		if k != "ok" && v > 0 {
			out[k] = v
		}
	}
	return out
}
