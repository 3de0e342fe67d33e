package triage

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// fixtureDirs are walked by the table test; real/ holds captures from
// patchbay's own VMs and may be absent.
var fixtureDirs = []string{"testdata", filepath.Join("testdata", "real")}

type want struct {
	Kind  Kind
	Title string
}

type fixture struct {
	path string
	want []want
	log  []byte
}

// readFixture parses "TITLE: ..." / "KIND: ..." header lines (one pair per
// expected finding, in order), a blank line, then the log.
func readFixture(path string) (fixture, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return fixture{}, err
	}
	fx := fixture{path: path}
	var titles, kinds []string
	for {
		nl := bytes.IndexByte(data, '\n')
		if nl < 0 {
			return fx, fmt.Errorf("%s: no blank line after the header", path)
		}
		line := strings.TrimRight(string(data[:nl]), "\r")
		data = data[nl+1:]
		if line == "" {
			break
		}
		switch {
		case strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "TITLE: "):
			titles = append(titles, strings.TrimPrefix(line, "TITLE: "))
		case strings.HasPrefix(line, "KIND: "):
			kinds = append(kinds, strings.TrimPrefix(line, "KIND: "))
		default:
			return fx, fmt.Errorf("%s: bad header line %q", path, line)
		}
	}
	if len(titles) != len(kinds) {
		return fx, fmt.Errorf("%s: %d TITLE lines but %d KIND lines", path, len(titles), len(kinds))
	}
	for i := range titles {
		fx.want = append(fx.want, want{Kind(kinds[i]), titles[i]})
	}
	fx.log = data
	return fx, nil
}

func loadFixtures(t testing.TB) []fixture {
	t.Helper()
	var out []fixture
	for _, dir := range fixtureDirs {
		entries, err := os.ReadDir(dir)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if e.IsDir() || !strings.HasSuffix(e.Name(), ".txt") {
				continue
			}
			fx, err := readFixture(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, fx)
		}
	}
	if len(out) == 0 {
		t.Fatal("no fixtures found")
	}
	return out
}

func summarize(fs []Finding) []want {
	out := make([]want, 0, len(fs))
	for _, f := range fs {
		out = append(out, want{f.Kind, f.Title})
	}
	return out
}

func TestFixtures(t *testing.T) {
	for _, fx := range loadFixtures(t) {
		t.Run(fx.path, func(t *testing.T) {
			got := Parse(fx.log)
			if g := summarize(got); fmt.Sprint(g) != fmt.Sprint(fx.want) {
				t.Errorf("findings:\n got  %q\n want %q", g, fx.want)
				for _, f := range got {
					t.Logf("line %d %s %q:\n%s", f.Line, f.Kind, f.Title, f.Report)
				}
			}
			checkInvariants(t, fx.log, got)
		})
	}
}

// checkInvariants holds for any input: bounded output, lines in range,
// reports that start with the line they point at.
func checkInvariants(t *testing.T, input []byte, fs []Finding) {
	t.Helper()
	lines := splitLines(input)
	if len(fs) > MaxFindings {
		t.Fatalf("%d findings, cap is %d", len(fs), MaxFindings)
	}
	for _, f := range fs {
		if f.Line < 1 || f.Line > len(lines) {
			t.Fatalf("finding %q: line %d outside 1..%d", f.Title, f.Line, len(lines))
		}
		if len(f.Report) > MaxReportBytes {
			t.Fatalf("finding %q: report of %d bytes", f.Title, len(f.Report))
		}
		if n := strings.Count(f.Report, "\n") + 1; n > MaxReportLines {
			t.Fatalf("finding %q: report of %d lines", f.Title, n)
		}
		if len(f.Title) > MaxTitleBytes || !utf8.ValidString(f.Title) {
			t.Fatalf("bad title %q", f.Title)
		}
		if f.Title == "" || f.Kind == "" {
			t.Fatalf("empty title or kind: %+v", f)
		}
		if first, _, _ := strings.Cut(f.Report, "\n"); len(f.Report) > 0 && first != lines[f.Line-1].raw {
			t.Fatalf("finding %q: report starts with %q, line %d is %q", f.Title, first, f.Line, lines[f.Line-1].raw)
		}
	}
}

func TestLockdepCircular(t *testing.T) {
	fx, err := readFixture(filepath.Join("testdata", "lockdep_circular_ext4.txt"))
	if err != nil {
		t.Fatal(err)
	}
	fs := Parse(fx.log)
	if len(fs) != 1 || fs[0].Lockdep == nil {
		t.Fatalf("want one lockdep finding, got %+v", fs)
	}
	ld := fs[0].Lockdep
	if ld.Header != "possible circular locking dependency detected" || ld.Task != "e4defrag" {
		t.Errorf("header %q task %q", ld.Header, ld.Task)
	}
	locks := []LockClass{
		{Name: "&mapping->invalidate_lock", Raw: "&mapping->invalidate_lock", Usage: "{++++}-{3:3}", Role: RoleAcquiring, At: "ext4_page_mkwrite"},
		{Name: "&ei->i_data_sem", Raw: "&ei->i_data_sem", Usage: "{++++}-{3:3}", Role: RoleHolding, At: "ext4_move_extents"},
		{Name: "sb_writers", Raw: "sb_writers#3", Usage: "{.+.+}-{0:0}", Role: RoleHeld, Holder: "e4defrag", At: "mnt_want_write_file"},
		{Name: "&ei->i_data_sem", Raw: "&ei->i_data_sem", Usage: "{++++}-{3:3}", Role: RoleHeld, Holder: "e4defrag", At: "ext4_move_extents"},
		{Name: "sb_pagefaults", Raw: "sb_pagefaults#3", Usage: "{.+.+}-{0:0}", Role: RoleHeld, Holder: "e4defrag", At: "do_page_mkwrite"},
	}
	if fmt.Sprintf("%+v", ld.Locks) != fmt.Sprintf("%+v", locks) {
		t.Errorf("locks:\n got  %+v\n want %+v", ld.Locks, locks)
	}
	if len(ld.Chain) != 2 {
		t.Fatalf("chain: %+v", ld.Chain)
	}
	c1, c0 := ld.Chain[0], ld.Chain[1]
	if c1.Depth != 1 || c1.Name != "&ei->i_data_sem" || c1.At != "ext4_da_map_blocks" || c1.Stack[0] != "lock_acquire" {
		t.Errorf("link #1: %+v", c1)
	}
	if c0.Depth != 0 || c0.Name != "&mapping->invalidate_lock" || c0.At != "ext4_page_mkwrite" || len(c0.Stack) != 20 {
		t.Errorf("link #0: %+v", c0)
	}
}

func TestLockdepNestedNames(t *testing.T) {
	fx, err := readFixture(filepath.Join("testdata", "lockdep_misc.txt"))
	if err != nil {
		t.Fatal(err)
	}
	fs := Parse(fx.log)
	if len(fs) == 0 || fs[0].Lockdep == nil {
		t.Fatal("no lockdep finding")
	}
	var names []string
	for _, l := range fs[0].Lockdep.Locks {
		names = append(names, l.Name)
	}
	wantNames := "[&sbi->s_writepages_rwsem &sbi->s_writepages_rwsem (wq_completion)writeback (work_completion)(&(&wb->dwork)->work) &sbi->s_writepages_rwsem]"
	if fmt.Sprint(names) != wantNames {
		t.Errorf("names %v", names)
	}
	if fs[0].Lockdep.Task != "kworker/u8:3" {
		t.Errorf("task %q", fs[0].Lockdep.Task)
	}
	for _, f := range fs {
		if f.Title == "bad unlock balance in ext4_ind_migrate" {
			if l := f.Lockdep.Locks[0]; l.Role != RoleReleasing || l.Name != "&ei->i_data_sem" || l.At != "ext4_ind_migrate" {
				t.Errorf("release: %+v", l)
			}
		}
	}
}

var (
	reTS     = regexp.MustCompile(`\[ *(\d+)\.(\d{6})\]`)
	reTag    = regexp.MustCompile(`\[ *([TC])(\d+)\]`)
	reLongHx = regexp.MustCompile(`\b[0-9a-f]{8,16}\b|0x[0-9a-f]+`)
	rePIDs   = regexp.MustCompile(`(PID: |pid:|pid: |/|:)(\d{2,})\b`)
	reCPUs   = regexp.MustCompile(`(CPU: |CPU#|cpu |CPUs |CPU )([01])\b`)
	reSrcLn  = regexp.MustCompile(`(\.[ch]):(\d+)`)
	reInst   = regexp.MustCompile(`#(\d+)\)`)
	reSecs   = regexp.MustCompile(`(\d+)( seconds|s!| jiffies)`)
	reInode  = regexp.MustCompile(`(inode #|ino: |inode )(\d+)`)
)

// perturb changes what differs between two runs of the same bug:
// timestamps, caller tags, PIDs, addresses, offsets, CPUs, source lines,
// lock instance numbers, durations, devices and inode numbers.
func perturb(s string) string {
	shift := func(n string, by int) string {
		v, _ := strconv.Atoi(n)
		return strconv.Itoa(v + by)
	}
	s = reTS.ReplaceAllStringFunc(s, func(m string) string {
		p := reTS.FindStringSubmatch(m)
		return fmt.Sprintf("[%5s.%s]", shift(p[1], 1000), p[2])
	})
	s = reTag.ReplaceAllStringFunc(s, func(m string) string {
		p := reTag.FindStringSubmatch(m)
		return fmt.Sprintf("[%6s]", p[1]+shift(p[2], 7))
	})
	s = reLongHx.ReplaceAllStringFunc(s, func(m string) string {
		b := []byte(m)
		for i := range b {
			if i < 2 && m[:2] == "0x" {
				continue
			}
			v := strings.IndexByte("0123456789abcdef", b[i])
			b[i] = "0123456789abcdef"[(v+5)%16]
		}
		return string(b)
	})
	s = rePIDs.ReplaceAllStringFunc(s, func(m string) string {
		p := rePIDs.FindStringSubmatch(m)
		return p[1] + shift(p[2], 31)
	})
	s = reCPUs.ReplaceAllStringFunc(s, func(m string) string {
		p := reCPUs.FindStringSubmatch(m)
		return p[1] + map[string]string{"0": "1", "1": "0"}[p[2]]
	})
	s = reSrcLn.ReplaceAllString(s, "${1}:999")
	s = reInst.ReplaceAllString(s, "#9)")
	s = reSecs.ReplaceAllStringFunc(s, func(m string) string {
		p := reSecs.FindStringSubmatch(m)
		return shift(p[1], 17) + p[2]
	})
	s = reInode.ReplaceAllStringFunc(s, func(m string) string {
		p := reInode.FindStringSubmatch(m)
		return p[1] + shift(p[2], 4242)
	})
	s = strings.ReplaceAll(s, "vdb", "vdc")
	return s
}

func TestSameBugSameTitle(t *testing.T) {
	for _, fx := range loadFixtures(t) {
		other := []byte(perturb(string(fx.log)))
		if bytes.Equal(other, fx.log) {
			t.Fatalf("%s: perturb changed nothing", fx.path)
		}
		a, b := summarize(Parse(fx.log)), summarize(Parse(other))
		if fmt.Sprint(a) != fmt.Sprint(b) {
			t.Errorf("%s: titles differ between runs:\n %q\n %q", fx.path, a, b)
		}
	}
	// Explicitly: the same WARNING from two boots.
	run1 := "[   61.012901][ T2345] WARNING: CPU: 1 PID: 2345 at fs/ext4/move_extent.c:640 ext4_move_extents.isra.0+0x1a/0x2b0\n"
	run2 := "<4>[  902.000001] WARNING: CPU: 0 PID: 77 at fs/ext4/move_extent.c:652 ext4_move_extents.isra.0+0x2c/0x2d0 [ext4]\r\r\n"
	if a, b := Parse([]byte(run1)), Parse([]byte(run2)); len(a) != 1 || len(b) != 1 || a[0].Title != b[0].Title || a[0].Title != "WARNING in ext4_move_extents" {
		t.Errorf("%+v\n%+v", a, b)
	}
}

func TestSevere(t *testing.T) {
	for _, c := range []struct {
		f    Finding
		want bool
	}{
		{Finding{Kind: KindWarning}, true},
		{Finding{Kind: KindLockdep}, true},
		{Finding{Kind: KindExt4Error}, true},
		{Finding{Kind: KindJBD2Error}, true},
		{Finding{Kind: KindExt4Warning}, false},
		{Finding{Kind: KindLockdepOff}, false},
		{Finding{Kind: KindReboot, Title: TitleRestart}, false},
		{Finding{Kind: KindReboot, Title: TitleSysrqReset}, false},
		{Finding{Kind: KindReboot, Title: TitleUnexpectedReboot}, true},
	} {
		if c.f.Severe() != c.want {
			t.Errorf("%+v: Severe() = %v", c.f, !c.want)
		}
	}
}

func TestPrefixes(t *testing.T) {
	for _, c := range []struct{ in, text, caller string }{
		{"[   12.345678][ T123] WARNING: x", "WARNING: x", "T123"},
		{"[   12.345678][    C1]  dump_stack+0x1/0x2", " dump_stack+0x1/0x2", "C1"},
		{"<4>[   12.345678] BUG: y\r\r", "BUG: y", ""},
		{"Jan  6 12:00:00 vm kernel: EXT4-fs error (device vdb): f:1: x", "EXT4-fs error (device vdb): f:1: x", ""},
		{"user output[   12.345678][ T9] kernel BUG at a.c:1!", "kernel BUG at a.c:1!", "T9"},
		{"plain line", "plain line", ""},
	} {
		l := parseLine(c.in)
		if l.text != c.text || l.caller != c.caller {
			t.Errorf("%q: text %q caller %q", c.in, l.text, l.caller)
		}
	}
}

// TestLargeInputs feeds 1 MiB inputs built to defeat a naive parser:
// bodies that never end, many callers, many headers, one huge line.
func TestLargeInputs(t *testing.T) {
	const size = 1 << 20
	repeat := func(f func(i int) string) []byte {
		var b bytes.Buffer
		for i := 0; b.Len() < size; i++ {
			b.WriteString(f(i))
		}
		return b.Bytes()
	}
	inputs := map[string][]byte{
		"same header": repeat(func(int) string { return "BUG: spinlock bad magic on CPU#0\n" }),
		"distinct headers": repeat(func(i int) string {
			return fmt.Sprintf("WARNING: CPU: 0 PID: 1 at a.c:1 f%s+0x1/0x2\n", strconv.FormatInt(int64(i), 26))
		}),
		"callers": repeat(func(i int) string {
			return fmt.Sprintf("[    1.000000][ T%d] ------------[ cut here ]------------\n[    1.000000][ T%d] WARNING: CPU: 0 PID: 1 at a.c:1 f+0x1/0x2\n[    1.000000][ C%d] Call Trace:\n", i, i, i)
		}),
		"one line":   bytes.Repeat([]byte("BUG: x ("), size/8),
		"open trace": append([]byte("kernel BUG at a.c:1!\nCall Trace:\n"), repeat(func(int) string { return " f+0x1/0x2\n" })...),
		"chain": append([]byte("WARNING: possible circular locking dependency detected\n"), repeat(func(i int) string {
			return fmt.Sprintf("-> #%d (a){+.+.}-{0:0}:\n       f+0x1/0x2\n ffff888000000000 ((b)c){+.+.}-{0:0}, at: g+0x1/0x2\n", i)
		})...),
		"panics in a body": append([]byte("BUG: soft lockup - CPU#0 stuck for 1s!\nCall Trace:\n"), repeat(func(i int) string {
			return fmt.Sprintf(" f+0x1/0x2\nKernel panic - not syncing: p%d\n", i)
		})...),
		"same panic in a body": append([]byte("BUG: soft lockup - CPU#0 stuck for 1s!\nCall Trace:\n"), repeat(func(i int) string {
			return fmt.Sprintf(" f+0x1/0x2\nKernel panic - not syncing: p %d\n", i)
		})...),
		"ext4 flood": repeat(func(i int) string {
			return fmt.Sprintf("EXT4-fs error (device vdb): ext4_f%d:1: inode #%d: comm x: y\n", i%500, i)
		}),
	}
	for name, in := range inputs {
		start := time.Now()
		fs := Parse(in)
		t.Logf("%s: %v, %d findings", name, time.Since(start), len(fs))
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s: %v for %d bytes", name, d, len(in))
		}
		checkInvariants(t, in, fs)
	}
}

func FuzzParse(f *testing.F) {
	// Seeds are the fixtures cut into 40-line pieces: small seeds keep the
	// fuzzer's minimization of new inputs from stalling it for seconds.
	for _, fx := range loadFixtures(f) {
		lines := bytes.SplitAfter(fx.log, []byte("\n"))
		for i := 0; i < len(lines); i += 40 {
			f.Add(bytes.Join(lines[i:min(i+40, len(lines))], nil))
		}
	}
	f.Add([]byte("BUG: x\n\r\n\n"))
	f.Add([]byte("[ 1.000000][ T1] kernel BUG at a.c:1!\n[ 1.000000][ T1] Oops: invalid opcode: 0000 [#1]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		start := time.Now()
		fs := Parse(data)
		if d := time.Since(start); d > 2*time.Second && len(data) <= 1<<20 {
			t.Fatalf("%v for %d bytes", d, len(data))
		}
		checkInvariants(t, data, fs)
	})
}

// consoleLog builds a ~1 MiB console log: a boot, then the fixtures'
// reports spread among ordinary kernel chatter.
func consoleLog(tb testing.TB) []byte {
	var b bytes.Buffer
	fxs := loadFixtures(tb)
	for i := 0; b.Len() < 1<<20; i++ {
		for j := 0; j < 40; j++ {
			fmt.Fprintf(&b, "[%5d.%06d][ T%d] EXT4-fs (vdb): mounted filesystem %08x r/w with ordered data mode. Quota mode: none.\n", i, j, 100+j, i*j)
		}
		b.Write(fxs[i%len(fxs)].log)
	}
	return b.Bytes()
}

func BenchmarkParse(b *testing.B) {
	log := consoleLog(b)
	b.SetBytes(int64(len(log)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		Parse(log)
	}
}

// TestSnippets covers headers too small to deserve a fixture file.
func TestSnippets(t *testing.T) {
	for _, c := range []struct {
		log  string
		want []want
	}{
		{"Kernel panic - not syncing: Fatal exception\n", []want{{KindPanic, "kernel panic: Fatal exception"}}},
		{"Oops: invalid opcode: 0000 [#1] PREEMPT SMP NOPTI\nRIP: 0010:ext4_foo+0x1/0x2\nCall Trace:\n ext4_bar+0x1/0x2\n",
			[]want{{KindInvalidOpcode, "invalid opcode in ext4_foo"}}},
		{"WARNING: at fs/ext4/inode.c:12 ext4_foo.constprop.0+0x1/0x2 [ext4]()\n", []want{{KindWarning, "WARNING in ext4_foo"}}},
		{"WARNING: fs/ext4/inode.c:12 at ext4_foo+0x1/0x2, CPU#1: kworker/1:2/45\n", []want{{KindWarning, "WARNING in ext4_foo"}}},
		{"BUG: KCSAN: data-race in ext4_a / ext4_b\n\n=====\n", []want{{KindBug, "KCSAN: data-race in ext4_a / ext4_b"}}},
		{"Jan  6 12:00:00 vm kernel: EXT4-fs error (device sda1): ext4_find_entry:1683: inode #2: comm ls: reading directory lblock 0\n",
			[]want{{KindExt4Error, "EXT4-fs error in ext4_find_entry"}}},
		{"watchdog: CPU1: Watchdog detected hard LOCKUP on cpu 0\nRIP: 0010:ext4_spin+0x1/0x2\nCall Trace:\n <TASK>\n ext4_x+0x1/0x2\n </TASK>\n",
			[]want{{KindSoftLockup, "hard LOCKUP in ext4_spin"}}},
		{"=============================\n[ BUG: Invalid wait context ]\n6.12.0 #1 Not tainted\n-----------------------------\nswapper/0/1 is trying to lock:\nffff888003e1a0b8 (&ei->i_es_lock){....}-{3:3}, at: ext4_es_insert_extent+0x1/0x2\nother info that might help us debug this:\ncontext-{5:5}\n",
			[]want{{KindLockdep, "invalid wait context in ext4_es_insert_extent"}}},
		{"INFO: trying to register non-static key.\nThe code is fine but needs lockdep annotation, or maybe\nyou didn't initialize this object before use?\nturning off the locking correctness validator.\nCall Trace:\n <TASK>\n dump_stack_lvl+0x1/0x2\n register_lock_class+0x1/0x2\n __lock_acquire+0x1/0x2\n lock_acquire+0x1/0x2\n _raw_spin_lock+0x1/0x2\n ext4_init_foo+0x1/0x2\n </TASK>\n",
			[]want{{KindLockdep, "trying to register non-static key in ext4_init_foo"}, {KindLockdepOff, "turning off the locking correctness validator"}}},
		{"JBD2: Spotted dirty metadata buffer (dev = vdb, blocknr = 1234). There's a risk of filesystem corruption in case of system crash.\n",
			[]want{{KindJBD2Error, "JBD2: Spotted dirty metadata buffer"}}},
		{"BUG: spinlock bad magic on CPU#0, fsstress/1234\n lock: 0xffff888, .magic: 00000000, .owner: <none>/-1, .owner_cpu: 0\nCall Trace:\n <TASK>\n do_raw_spin_lock+0x1/0x2\n ext4_x+0x1/0x2\n </TASK>\n",
			[]want{{KindBug, "BUG: spinlock bad magic in ext4_x"}}},
	} {
		if got := summarize(Parse([]byte(c.log))); fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("%.50q:\n got  %q\n want %q", c.log, got, c.want)
		}
	}
}

// TestLockdepRealRoles checks the lock roles of real reports whose wording
// differs from the circular-dependency report's.
func TestLockdepRealRoles(t *testing.T) {
	for _, c := range []struct {
		file, task string
		roles      string // "name:role" of the first locks
	}{
		// "bash/70 [HC0[0]:SC0[2]:HE1:SE0] is trying to acquire:" / "and this task is already holding:"
		{"provoke-lockdep-irq-unsafe-order.txt", "bash", "[pb_bh_unsafe:acquiring pb_bh_safe:holding pb_bh_safe:other]"},
		// "swapper/0/0 just changed the state of lock:" / "but this lock took another, ... lock in the past:"
		{"provoke-lockdep-irq-inversion.txt", "swapper/0", "[pb_bh_safe:changed pb_bh_unsafe:other]"},
		// "swapper/1/0 [HC0[0]:SC1[1]:HE1:SE0] takes:"
		{"provoke-lockdep-inconsistent.txt", "swapper/1", "[pb_spin:acquiring]"},
		{"provoke-lockdep-bad-unlock.txt", "bash", "[pb_unbalanced:releasing]"},
	} {
		fx, err := readFixture(filepath.Join("testdata", "real", c.file))
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		fs := Parse(fx.log)
		if len(fs) == 0 || fs[0].Lockdep == nil {
			t.Fatalf("%s: no lockdep finding", c.file)
		}
		ld := fs[0].Lockdep
		var roles []string
		for _, l := range ld.Locks {
			roles = append(roles, l.Name+":"+l.Role)
		}
		n := strings.Count(c.roles, ":")
		if ld.Task != c.task || len(roles) < n || fmt.Sprint(roles[:n]) != c.roles {
			t.Errorf("%s: task %q, roles %v; want %q, %s", c.file, ld.Task, roles, c.task, c.roles)
		}
	}
}

// Defrag refusals are expected results, not bugs: stock 6.12's and the
// buffered-iomap series' (22/27) KERN_ERR lines must not become findings,
// or every eopnotsupp run would fail no_findings.
func TestDefragRefusalsAreNotFindings(t *testing.T) {
	log := "[   12.345678][  T123] EXT4-fs (vdb): Online defrag not supported with data journaling\n" +
		"[   12.345700][  T123] EXT4-fs (vdb): Online defrag not supported for encrypted files\n" +
		"[   12.345800][  T123] EXT4-fs (vdb): Online defrag not supported for inode with iomap buffered IO path\n"
	if got := Parse([]byte(log)); len(got) != 0 {
		t.Errorf("findings %+v, want none", got)
	}
	// The same log with a real ext4 error in it still reports that.
	withErr := log + "[   13.000000][  T123] EXT4-fs error (device vdb): ext4_lookup:1855: inode #2: comm ls: deleted inode referenced: 12\n"
	if got := Parse([]byte(withErr)); len(got) != 1 {
		t.Errorf("with an ext4 error: %d findings, want 1", len(got))
	}
}

// "INFO: lockdep is turned off" after a lockdep report is that report's
// consequence: a note on it, not a finding. Without a lockdep report
// before it (a hung-task dump), it stays a finding of its own.
func TestLockdepTurnedOffFoldsIntoItsReport(t *testing.T) {
	data, err := os.ReadFile("testdata/real/provoke-lockdep-off-sysrq-d.txt")
	if err != nil {
		t.Fatal(err)
	}
	fs := Parse(data)
	if len(fs) != 1 || fs[0].Kind != KindLockdep {
		t.Fatalf("findings %+v, want the lockdep report alone", fs)
	}
	at := 1 + strings.Count(string(data[:strings.Index(string(data), "] INFO: lockdep is turned off.")]), "\n")
	if len(fs[0].Notes) != 1 || !strings.Contains(fs[0].Notes[0], fmt.Sprintf("INFO: lockdep is turned off (line %d)", at)) {
		t.Errorf("notes %q, want the lockdep-off line of the capture", fs[0].Notes)
	}

	data, err = os.ReadFile("testdata/hung_task.txt")
	if err != nil {
		t.Fatal(err)
	}
	var off int
	for _, f := range Parse(data) {
		if f.Kind == KindLockdepOff && f.Title == "INFO: lockdep is turned off" {
			off++
		}
		if len(f.Notes) > 0 {
			t.Errorf("%s has notes %q", f.Title, f.Notes)
		}
	}
	if off != 1 {
		t.Errorf("hung_task.txt: %d lockdep-off findings, want 1 (no lockdep report before it)", off)
	}
}

func TestNoFindingsIsAnEmptyList(t *testing.T) {
	fs := Parse([]byte("[    0.000000] Linux version 6.12.117\n[    1.000000] all good\n"))
	data, err := json.Marshal(fs)
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != "[]" {
		t.Errorf("no findings marshal to %s, want []", data)
	}
}
