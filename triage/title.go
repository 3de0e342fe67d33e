package triage

import (
	"regexp"
	"strings"
	"unicode/utf8"
)

// report is what a title function sees.
type report struct {
	head    string   // the header line's message
	sub     []string // the matcher's submatches of head, nil without a regexp
	body    []string // messages of the report's lines, head first
	lockdep *Lockdep
}

var (
	// reRIP matches the faulting function: "RIP: 0010:func+0x1/0x2" (also
	// the pre-4.x "[<addr>] func" form) and arm64's "pc : func+0x1/0x2".
	reRIP = regexp.MustCompile(`^(?:RIP: [0-9a-f]{4}:(?:\[<[0-9a-f]+>\]\s*)*|pc : )([A-Za-z_$][\w$.]*)\+0x[0-9a-f]+`)
	// reFrame matches a call trace frame: " func+0x1/0x2", " ? func+0x1/0x2",
	// " [<addr>] func+0x1/0x2", and symbolized " func file.c:12 [inline]".
	reFrame = regexp.MustCompile(`^\s*(?:\[<[0-9a-f]+>\]\s*)?(\?\s+)?([A-Za-z_$][\w$.]*)(?:\+0x[0-9a-f]+/0x[0-9a-f]+| \S+:\d+ \[inline\])`)
)

type frame struct {
	fn       string
	reliable bool // not a "? " guess of the unwinder
}

// parseFrame returns the frame on a line, if any.
func parseFrame(s string) (frame, bool) {
	m := reFrame.FindStringSubmatch(s)
	if m == nil {
		return frame{}, false
	}
	fn := cleanFunc(m[2])
	return frame{fn: fn, reliable: m[1] == ""}, fn != ""
}

// rip is the function the CPU was in, from the first register dump.
func (r *report) rip() string {
	for _, s := range r.body {
		if m := reRIP.FindStringSubmatch(s); m != nil {
			return cleanFunc(m[1])
		}
	}
	return ""
}

// frames are the frames of the first call trace: the indented lines after
// "Call Trace:", up to the first line that is not indented.
func (r *report) frames() []frame {
	var out []frame
	in := false
	for _, s := range r.body {
		if !in {
			in = isCallTrace(s)
			continue
		}
		if s == "" || (s[0] != ' ' && s[0] != '\t') {
			// An exception inside the trace dumps registers in the
			// middle of it; anything else ends the trace.
			if strings.HasPrefix(s, "RIP: ") || strings.HasPrefix(s, "Code: ") || reRegister.MatchString(s) {
				continue
			}
			break
		}
		if f, ok := parseFrame(s); ok {
			out = append(out, f)
		}
	}
	return out
}

// stackFunc is the first frame of the call trace that is not report,
// locking, scheduling or entry machinery: the function to blame.
func (r *report) stackFunc() string { return blame(r.frames()) }

func blame(frames []frame) string {
	for _, f := range frames {
		if f.reliable && !isInfra(f.fn) {
			return f.fn
		}
	}
	// Without frame pointers every frame may be a guess.
	for _, f := range frames {
		if !isInfra(f.fn) {
			return f.fn
		}
	}
	return ""
}

// ripOrStack blames the faulting function unless it is machinery (a lock
// primitive, memcpy, ...), then the call trace.
func (r *report) ripOrStack() string {
	rip := r.rip()
	if rip != "" && !isInfra(rip) {
		return rip
	}
	if f := r.stackFunc(); f != "" {
		return f
	}
	return rip
}

func with(title, fn string) string {
	if fn == "" {
		return title
	}
	return title + " in " + fn
}

func ripTitle(prefix string) func(*report) string {
	return func(r *report) string { return with(prefix, r.ripOrStack()) }
}

func warningTitle(r *report) string {
	file, fn := r.sub[1], r.sub[2]
	if file == "" {
		file, fn = r.sub[3], r.sub[4]
	}
	fn = cleanFunc(fn)
	if fn == "" || isInfra(fn) {
		// refcount_warn_saturate and friends warn on behalf of their caller.
		if f := r.stackFunc(); f != "" {
			fn = f
		} else if fn == "" {
			fn = r.rip()
		}
	}
	if fn == "" {
		return "WARNING at " + file
	}
	return "WARNING in " + fn
}

// sanitizerTitle: "KASAN: slab-use-after-free Read in foo".
func sanitizerTitle(r *report) string {
	tool, typ, fn, rest := r.sub[1], r.sub[2], cleanFunc(r.sub[3]), r.sub[4]
	if fn == "" || isInfra(fn) {
		// memcpy, strlen, kfree...: blame the caller.
		if f := r.stackFunc(); f != "" {
			fn = f
		}
	}
	if tool == "KASAN" {
		for _, s := range r.body {
			if strings.HasPrefix(s, "Read of size") {
				typ += " Read"
				break
			}
			if strings.HasPrefix(s, "Write of size") {
				typ += " Write"
				break
			}
		}
	}
	// KCSAN names both racing functions: "data-race in foo / bar".
	if m := reSecondFunc.FindStringSubmatch(rest); m != nil && fn != "" {
		fn += " / " + cleanFunc(m[1])
	}
	return with(tool+": "+typ, fn)
}

var reSecondFunc = regexp.MustCompile(`^\S* / ([A-Za-z_$][\w$.]*)`)

// ubsanTitle: "UBSAN: shift-out-of-bounds in ext4_fill_super", from the
// call trace, else the source file.
func ubsanTitle(r *report) string {
	if f := r.stackFunc(); f != "" {
		return "UBSAN: " + r.sub[1] + " in " + f
	}
	return with("UBSAN: "+r.sub[1], r.sub[2])
}

// genericBugTitle keeps the words of an unknown "BUG: " line up to its
// first detail (address, counter, task) and blames the faulting or calling
// function when there is a register dump or call trace.
func genericBugTitle(r *report) string {
	msg := cutDetails(strings.TrimPrefix(r.head, "BUG: "))
	fn := ""
	if r.rip() != "" || len(r.frames()) > 0 {
		fn = r.ripOrStack()
	}
	return with("BUG: "+msg, fn)
}

// cutDetails cuts a message at its first detail: ", ", ": ", " - ", a
// bracket, or a word carrying a number, key or path.
func cutDetails(s string) string {
	for _, sep := range [...]string{", ", ": ", " - ", " [", " ("} {
		if i := strings.Index(s, sep); i >= 0 {
			s = s[:i]
		}
	}
	words := strings.Fields(s)
	for i, w := range words {
		if strings.ContainsAny(w, ":=/#") || (w[0] >= '0' && w[0] <= '9') {
			words = words[:i]
			break
		}
	}
	// Drop a preposition left dangling by the cut.
	for len(words) > 1 {
		switch words[len(words)-1] {
		case "at", "in", "on", "for", "of", "by", "from", "to":
			words = words[:len(words)-1]
			continue
		}
		break
	}
	return strings.Join(words, " ")
}

var reParens = regexp.MustCompile(`\s*\([^()]+\)`)

// cutParens removes parenthesized details: "(dev = vdb, blocknr = 1)".
func cutParens(s string) string { return reParens.ReplaceAllString(s, "") }

var reJBD2Dev = regexp.MustCompile(`\s*\b(?:on|for|in) (?:device )?[\w.]+-\d+\b`)

// jbd2Msg drops device names, parenthesized details and everything after
// the first sentence.
func jbd2Msg(s string) string {
	s = cutParens(reJBD2Dev.ReplaceAllString(s, ""))
	if i := strings.Index(s, ". "); i >= 0 {
		s = s[:i]
	}
	return s
}

// cleanFunc turns "ext4_foo.isra.0+0x1a/0x2b0 [ext4]" into "ext4_foo";
// it returns "" for anything that is not a symbol.
func cleanFunc(s string) string {
	if i := strings.IndexAny(s, "+ "); i >= 0 {
		s = s[:i]
	}
	// Compiler clones (.isra.0, .constprop.0, .part.0, .cold) differ
	// between builds.
	if i := strings.IndexByte(s, '.'); i > 0 {
		s = s[:i]
	}
	s = strings.TrimRight(s, ",:")
	if s == "" || (s[0] >= '0' && s[0] <= '9') {
		return ""
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c == '$' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return ""
		}
	}
	return s
}

var (
	reOffset   = regexp.MustCompile(`\+0x[0-9a-fA-F]+(?:/0x[0-9a-fA-F]+)?`)
	reBrackets = regexp.MustCompile(`\s*\[[^\]]*\]`)
	reKeyNum   = regexp.MustCompile(`\s*\b\w+\s*=\s*-?(?:0x)?[0-9a-fA-F]+\b`)
	reHex      = regexp.MustCompile(`\b0x[0-9a-fA-F]+\b|\b[0-9a-fA-F]{8,}\b`)
	reFileLine = regexp.MustCompile(`(\.[A-Za-z]{1,3}):\d+(?::\d+)?`)
	reInstance = regexp.MustCompile(`#\d+`)
	reNumber   = regexp.MustCompile(`-?\b\d+\b`)
	reSpaces   = regexp.MustCompile(`\s+`)
	reSpacePct = regexp.MustCompile(`\s+([,;:!?)])`)
)

// normalizeTitle strips what differs between two runs of the same bug:
// offsets, addresses and other hex, line numbers, "#N" instance suffixes,
// numbers (PIDs, CPUs, inodes, counts), bracketed details; then collapses
// spaces and caps the length.
func normalizeTitle(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	s = reOffset.ReplaceAllString(s, "")
	s = reBrackets.ReplaceAllString(s, "")
	s = reKeyNum.ReplaceAllString(s, "")
	s = reHex.ReplaceAllString(s, "")
	s = reFileLine.ReplaceAllString(s, "$1")
	s = reInstance.ReplaceAllString(s, "")
	s = reNumber.ReplaceAllString(s, "")
	s = reSpaces.ReplaceAllString(s, " ")
	s = reSpacePct.ReplaceAllString(s, "$1")
	s = strings.Trim(s, " .,:;-")
	s = strings.ToValidUTF8(s, "?")
	if len(s) > MaxTitleBytes {
		n := MaxTitleBytes
		for n > 0 && !utf8.RuneStart(s[n]) {
			n--
		}
		s = s[:n]
	}
	return s
}

func isCallTrace(s string) bool {
	return strings.EqualFold(s, "Call Trace:") || strings.EqualFold(strings.TrimSpace(s), "Call Trace:")
}

// infraPrefixes are functions never blamed for a report: the reporting
// machinery itself (dump_stack, __warn, kasan_report, lockdep), lock and
// wait primitives a task sleeps or spins in, memory helpers that fault on
// behalf of their caller, interrupt/exception/syscall entry, workqueue and
// kthread plumbing. A title names the first frame outside them.
var infraPrefixes = []string{
	// reporting
	"dump_stack", "__dump_stack", "show_stack", "show_regs", "show_trace", "print_", "__print_",
	"printk", "vprintk", "_printk", "__warn", "warn_", "report_bug", "__report_bug", "handle_bug",
	"die", "__die", "oops_", "panic", "check_panic_on_warn", "__fortify_", "fortify_", "usercopy_abort",
	"refcount_warn_saturate", "__refcount_", "__list_add_valid", "__list_del_entry_valid",
	"bad_page", "free_page_is_bad", "debug_smp_processor_id", "check_preemption_disabled",
	// sanitizers
	"kasan_", "__kasan_", "____kasan_", "__asan_", "asan_", "kmsan_", "__msan_", "kcsan_", "__tsan_",
	"__ubsan_", "ubsan_", "__sanitizer_", "instrument_", "kfence_", "__kfence_",
	// exceptions, interrupts, entry
	"exc_", "asm_exc_", "asm_sysvec_", "sysvec_", "__sysvec_", "asm_common_interrupt", "common_interrupt",
	"irq_exit", "__irq_exit", "irqentry_", "do_error_trap", "do_trap", "handle_softirqs", "__do_softirq",
	"do_softirq", "__local_bh_enable", "do_syscall_", "entry_SYSCALL", "x64_sys_call", "ret_from_",
	"__pfx_", "__x86_indirect_thunk", "__x86_return_thunk", "srso_",
	// lockdep and lock primitives
	"lock_acquire", "lock_release", "lock_acquired", "lock_contended", "__lock_acquire", "__lock_release",
	"lockdep_", "__lockdep_", "validate_chain", "check_prev_add", "check_prevs_add", "check_noncircular",
	"check_deadlock", "check_irq_usage", "check_flags", "check_usage", "mark_lock", "mark_usage",
	"mark_held_locks", "debug_check_no_locks", "register_lock_class", "look_up_lock_class", "hlock_",
	"__might_", "might_", "___might_", "__cant_", "_raw_", "__raw_", "do_raw_", "raw_spin_", "queued_",
	"native_queued_", "__pv_queued", "pv_queued", "spin_lock", "spin_unlock", "mutex_lock", "__mutex_lock",
	"mutex_unlock", "__mutex_unlock", "mutex_trylock", "__rt_mutex", "rt_mutex", "rt_spin", "down", "__down",
	"up_read", "up_write", "rwsem_", "__rwsem", "percpu_down", "percpu_up", "__percpu_down", "__percpu_up",
	"percpu_rwsem", "rcuwait", "rcu_read_lock", "rcu_read_unlock", "__rcu_read", "rcu_lock_",
	// scheduling and waiting
	"__schedule", "schedule", "preempt_schedule", "io_schedule", "context_switch", "__switch_to",
	"finish_task_switch", "wait_for_completion", "__wait_for_common", "wait_for_common", "do_wait_for_common",
	"__wait_event", "wait_event", "bit_wait", "__wait_on_bit", "out_of_line_wait_on_bit", "wait_on_bit",
	"folio_wait", "__folio_wait", "__folio_lock", "folio_lock", "__wait_on_buffer", "__lock_buffer",
	"wait_on_page", "__lock_page", "do_nanosleep", "hrtimer_nanosleep", "__flush_work", "flush_work",
	"__flush_workqueue", "synchronize_rcu", "__synchronize_srcu", "synchronize_srcu", "rcu_sync",
	"csd_lock_wait", "smp_call_function", "on_each_cpu", "cpu_relax", "rep_nop",
	// memory helpers
	"memcpy", "__memcpy", "memmove", "__memmove", "memset", "__memset", "memcmp", "strlen", "strnlen",
	"strcmp", "strncmp", "strcpy", "strncpy", "strscpy", "sized_strscpy", "copy_to_user", "copy_from_user",
	"_copy_to_user", "_copy_from_user", "__copy_", "copy_user", "rep_movs", "kfree", "kmem_cache_free",
	"__kmem_cache_free", "slab_free", "__slab_free", "kvfree", "kmem_cache_alloc", "kmalloc", "__kmalloc",
	"kzalloc", "kvmalloc", "__kvmalloc", "slab_alloc", "__slab_alloc", "___slab_alloc", "alloc_pages",
	"__alloc_pages", "folio_alloc", "__folio_alloc", "__get_free_pages",
	// the page allocator's free and prep paths, where "BUG: Bad page state"
	// is detected on behalf of the caller that freed or allocated the page
	"free_unref_page", "free_unref_folios", "__free_pages", "free_pages", "__free_pages_ok",
	"free_the_page", "__folio_put", "folio_put", "release_pages", "put_page", "__put_page",
	"check_new_page", "prep_new_page", "get_page_from_freelist", "rmqueue",
	// threads, idle, timers, stall and lockup detectors
	"kthread", "worker_thread", "process_one_work", "process_scheduled_works", "smpboot_thread_fn",
	"native_", "pv_", "default_idle", "arch_cpu_idle", "cpu_idle", "do_idle", "cpu_startup_entry",
	"watchdog_", "__hrtimer_run_queues", "hrtimer_interrupt", "hrtimer_run", "update_process_times",
	"tick_", "rcu_sched_clock_irq", "rcu_pending", "print_cpu_stall", "check_cpu_stall",
	"rcu_dump_cpu_stacks", "dump_cpu_task", "nmi_", "arch_trigger", "trigger_",
}

func isInfra(fn string) bool {
	for _, p := range infraPrefixes {
		if strings.HasPrefix(fn, p) {
			return true
		}
	}
	return false
}
