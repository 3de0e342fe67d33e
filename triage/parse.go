package triage

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// reConsequence matches panics that only finish off an earlier finding
// (panic_on_warn, an oops in a task that must not die, a hang detector's
// panic): after such a finding they are not reported again.
var reConsequence = regexp.MustCompile(`^Kernel panic - not syncing: (?:Fatal exception|.*panic_on_warn set|.*panic_on_oops|hung_task: blocked tasks|softlockup: hung tasks|RCU Stall|.*panic forced after error|.*panic_on_rcu_stall|.*panic_on_taint)`)

// parser holds the state of one Parse call.
type parser struct {
	lines        []logLine
	next, prev   []int32 // neighbouring line of the same caller, -1 if none
	consumed     []bool  // part of an earlier report's body
	requireStamp bool    // the log is timestamped: unstamped lines are user space
	findings     []Finding
	seen         map[string]bool
	banners      int
	budget       int               // line visits left for collecting bodies
	titles       map[string]string // normalizeTitle cache: floods repeat one title
	rebootCause  bool              // a panic or reboot request since the last banner
	causes       int               // findings since the last banner that can explain a panic
	lastLockdep  int               // index in findings of the last lockdep report since the last banner, or -1
}

// lockdepOffNote is the line that, after a lockdep report, only says that
// lockdep stopped at that report: a note on it, not a finding.
const lockdepOffNote = "INFO: lockdep is turned off"

// Parse returns the findings in console or dmesg text, in the order their
// reports start; never nil, so that JSON says [] for none. See the package
// comment for the bounds.
func Parse(text []byte) []Finding {
	lines := splitLines(text)
	p := newParser(lines)
	p.run()
	p.findings = foldCutShort(p.findings)
	assignPhases(lines, p.findings)
	if p.findings == nil {
		return []Finding{}
	}
	return p.findings
}

// foldCutShort folds a report that is its header line alone, without the
// location the other report of the same kind has ("BUG: kernel NULL pointer
// dereference" beside "... in ext4_mpage_readpages"), into that report as a
// note: a second CPU hit the same fault and oops=panic stopped it before
// it printed more. Counting it as a finding of its own would make one bug
// look like two and give the second a title no other run can match.
func foldCutShort(findings []Finding) []Finding {
	out := findings[:0]
	for _, f := range findings {
		header := strings.TrimSpace(f.Report)
		if !strings.Contains(header, "\n") {
			if i := slices.IndexFunc(out, func(e Finding) bool {
				return e.Kind == f.Kind && strings.HasPrefix(e.Title, f.Title+" in ")
			}); i >= 0 {
				out[i].Notes = append(out[i].Notes, fmt.Sprintf("line %d: another task began the same report and printed no more (%s)", f.Line, header))
				continue
			}
		}
		out = append(out, f)
	}
	return out
}

// PhaseMarker is what the harness writes to /dev/kmsg as each phase of a
// run begins ("patchbay: phase workload"); a finding belongs to the last
// marker before it, or to "boot" when there is none.
const PhaseMarker = "patchbay: phase "

func assignPhases(lines []logLine, findings []Finding) {
	type marker struct {
		line  int // 1-based
		phase string
	}
	var markers []marker
	for i, l := range lines {
		if name, ok := strings.CutPrefix(l.text, PhaseMarker); ok {
			if f := strings.Fields(name); len(f) > 0 {
				markers = append(markers, marker{i + 1, f[0]})
			}
		}
	}
	for i := range findings {
		findings[i].Phase = "boot"
		// Findings are few and markers fewer: a linear scan is fine.
		for _, m := range markers {
			if m.line > findings[i].Line {
				break
			}
			findings[i].Phase = m.phase
		}
	}
}

func newParser(lines []logLine) *parser {
	p := &parser{
		lines:       lines,
		next:        make([]int32, len(lines)),
		prev:        make([]int32, len(lines)),
		consumed:    make([]bool, len(lines)),
		seen:        map[string]bool{},
		titles:      map[string]string{},
		lastLockdep: -1,
		// Bodies overlap only through transparent headers (a panic inside
		// a report); the budget keeps a flood of them linear.
		budget: 2*len(lines) + 1<<16,
	}
	last := map[string]int32{}
	stamped, nonEmpty := 0, 0
	for i := range lines {
		p.next[i], p.prev[i] = -1, -1
		l := &lines[i]
		if l.stamped {
			stamped++
		}
		if l.raw != "" {
			nonEmpty++
		}
		if l.caller == "" {
			continue
		}
		if j, ok := last[l.caller]; ok {
			p.next[j], p.prev[i] = int32(i), j
		}
		last[l.caller] = int32(i)
	}
	// In a timestamped log every kernel line carries a stamp; the
	// others are user space writing to the console.
	p.requireStamp = stamped > 0 && (stamped >= 16 || 2*stamped >= nonEmpty)
	return p
}

func (p *parser) run() {
	for i := range p.lines {
		if len(p.findings) >= MaxFindings {
			return
		}
		l := &p.lines[i]
		if p.requireStamp && !l.stamped {
			continue
		}
		p.noteRebootCause(l.text)
		m, sub, head := detect(l.text)
		if m == nil || (p.consumed[i] && !m.transparent) {
			continue
		}
		p.handle(i, m, sub, head)
	}
}

func (p *parser) noteRebootCause(t string) {
	for _, s := range [...]string{"Kernel panic - not syncing", "Rebooting in ", "reboot: ", "sysrq: Resetting", "kexec: "} {
		if strings.HasPrefix(t, s) {
			p.rebootCause = true
			return
		}
	}
}

func (p *parser) handle(i int, m *matcher, sub []string, head string) {
	if m.banner {
		p.banners++
		if p.banners > 1 && !p.rebootCause {
			p.add(m.kind, TitleUnexpectedReboot, i, []int{i}, nil)
		}
		p.rebootCause, p.causes, p.lastLockdep = false, 0, -1
		return
	}
	if m.kind == KindLockdepOff && p.lastLockdep >= 0 && strings.HasPrefix(head, lockdepOffNote) {
		f := &p.findings[p.lastLockdep]
		if len(f.Notes) == 0 {
			f.Notes = append(f.Notes, fmt.Sprintf("%s (line %d): lockdep stopped checking after this report", lockdepOffNote, i+1))
		}
		return
	}
	if m.kind == KindPanic && p.causes > 0 && reConsequence.MatchString(head) {
		return
	}
	idx, h := p.collect(i, m)
	for _, j := range idx {
		p.consumed[j] = true
	}
	r := &report{head: head, sub: sub, body: make([]string, 0, len(idx)-h)}
	for _, j := range idx[h:] {
		r.body = append(r.body, p.lines[j].text)
	}
	r.body[0] = head
	if m.lockdep {
		r.lockdep = parseLockdep(r.body)
	}
	p.add(m.kind, p.normalize(m.title(r)), idx[0], idx, r.lockdep)
}

func (p *parser) normalize(title string) string {
	if t, ok := p.titles[title]; ok {
		return t
	}
	t := normalizeTitle(title)
	if len(p.titles) < 4096 {
		p.titles[title] = t
	}
	return t
}

func (p *parser) add(kind Kind, title string, start int, idx []int, ld *Lockdep) {
	if kind != KindLockdepOff && kind != KindReboot {
		p.causes++
	}
	key := string(kind) + "\x00" + title
	if p.seen[key] {
		return
	}
	p.seen[key] = true
	var b strings.Builder
	for k, j := range idx {
		raw := p.lines[j].raw
		if b.Len()+len(raw)+1 > MaxReportBytes {
			break
		}
		if k > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(raw)
	}
	if kind == KindLockdep {
		p.lastLockdep = len(p.findings)
	}
	p.findings = append(p.findings, Finding{Kind: kind, Title: title, Line: start + 1, Report: b.String(), Lockdep: ld})
}

// step returns the line after j that may belong to a report whose header
// is at line h: the same caller's next line when callers are printed.
func (p *parser) step(j, h int, m *matcher) int {
	if p.lines[h].caller != "" && !m.allCallers {
		return int(p.next[j])
	}
	for j++; j < len(p.lines); j++ {
		if !p.requireStamp || p.lines[j].stamped {
			return j
		}
	}
	return -1
}

func (p *parser) back(j, h int, m *matcher) int {
	if p.lines[h].caller != "" && !m.allCallers {
		return int(p.prev[j])
	}
	for j--; j >= 0; j-- {
		if !p.requireStamp || p.lines[j].stamped {
			return j
		}
	}
	return -1
}

// collect returns the line indexes of the report whose header is at line
// h, in order, and the position of the header among them (after the
// "cut here" / "=====" lines that open the report).
func (p *parser) collect(h int, m *matcher) ([]int, int) {
	var idx []int
	if m.style != styleSingle {
		if q := p.back(h, h, m); q >= 0 && !p.consumed[q] {
			t := p.lines[q].text
			switch {
			case isEqFrame(t) || isCutHere(t):
				idx = append(idx, q)
			case m.kind == KindWarning:
				// WARN(cond, fmt...) prints its message between the two.
				if q2 := p.back(q, h, m); q2 >= 0 && !p.consumed[q2] && isCutHere(p.lines[q2].text) {
					idx = append(idx, q2, q)
				}
			}
		}
	}
	hpos := len(idx)
	idx = append(idx, h)
	if m.style == styleSingle {
		return idx, hpos
	}
	size := len(p.lines[h].raw)
	seenTrace, ended, inHeld := false, false, false
	pre := 0
	for j := p.step(h, h, m); j >= 0; j = p.step(j, h, m) {
		if len(idx) >= MaxReportLines || size >= MaxReportBytes || p.budget <= 0 {
			break
		}
		p.budget--
		t := p.lines[j].text
		if hm, _, _ := detect(t); hm != nil && !hm.transparent && !(hm.oopsLine && m.absorbOops) {
			break
		}
		if m.style == styleFramed {
			idx = append(idx, j)
			size += len(p.lines[j].raw) + 1
			if isEqFrame(t) {
				break
			}
			continue
		}
		if m.heldListEnds {
			if inHeld && !strings.HasPrefix(t, " #") {
				break
			}
			inHeld = inHeld || reHeldBy.MatchString(t)
		}
		if strings.HasPrefix(t, "---[ end ") {
			idx = append(idx, j)
			ended = true
			break
		}
		if seenTrace {
			if t == "" || (t[0] != ' ' && t[0] != '\t' && !isContinuation(t)) {
				break
			}
		} else if isCallTrace(t) {
			seenTrace = true
		} else if m.style == styleTrace {
			if pre++; pre > maxPreTrace {
				break
			}
		}
		idx = append(idx, j)
		size += len(p.lines[j].raw) + 1
	}
	if m.style == styleTrace && !seenTrace && !ended {
		// No call trace: a one-line report; what followed is not its.
		idx = idx[:hpos+1]
	}
	return idx, hpos
}

func isEqFrame(s string) bool {
	s = strings.TrimRight(s, " ")
	return len(s) >= 10 && strings.Trim(s, "=") == ""
}

func isCutHere(s string) bool { return strings.Contains(s, "[ cut here ]") }

var reRegister = regexp.MustCompile(`^(?:R[A-Z0-9]{1,3}|[CDEFGS]S|CR\d|DR\d|PKRU|EFLAGS|ORIG_RAX|pc|lr|sp|x\d+|pstate)\s*:`)

// continuations are unindented lines that still belong to an oops after its
// call trace: register dumps, irq stamps, the panic trailer.
var continuations = []string{
	"RIP: ", "Code: ", "Modules linked in", "irq event stamp", "hardirqs last", "softirqs last",
	"Kernel Offset", "Rebooting in", "Kernel panic - not syncing", "Call Trace:", "Call trace:",
	"CPU: ", "Hardware name:", "Dumping ftrace buffer", "Shutting down cpus", "Sending NMI",
	"NMI backtrace for cpu", "Workqueue: ", "---[ ",
}

func isContinuation(t string) bool {
	for _, c := range continuations {
		if strings.HasPrefix(t, c) {
			return true
		}
	}
	return reRegister.MatchString(t)
}
