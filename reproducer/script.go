// Package reproducer writes a self-contained directory that runs one
// recorded run again without patchbay: the static pbguest binary, a POSIX
// shell script with the run's exact command lines and seed, the kernel
// .config and patch list, and a README.
package reproducer

import (
	"fmt"
	"strings"

	"patchbay/casespec"
	"patchbay/harness"
	"patchbay/workload/guestcmd"
)

// Placeholders for guestcmd.Build: whole words that the script writes as
// shell variables (the binary beside the script, the device argument).
const (
	binWord = "\x00PBGUEST"
	devWord = "\x00DEV"
)

// Where the script mounts and keeps its files; the same mount point as
// the runner's VM, so the work file paths are the run's.
var scriptPaths = guestcmd.Paths{Bin: binWord, Dev: devWord, Mount: "/mnt/scratch", Tmp: "/tmp/pbrepro"}

var scriptVars = map[string]string{binWord: "PBGUEST", devWord: "DEV"}

// Script returns run.sh for a run of variant with seed: POSIX sh, taking
// the scratch device as its one argument. It prints one result line,
// "patchbay-repro: PASS" (exit 0) or "patchbay-repro: FAIL" (exit 1), after
// a FAIL: line per broken expectation, judged like the harness judges a
// run (harness.Judge); exit 2 when it could not run (bad device, mkfs).
func Script(c *harness.Case, variant string, seed uint64) (string, error) {
	if c.Workload.Kind != casespec.WorkloadPatchbay {
		return "", fmt.Errorf("%s: workload.kind %s: the reproducer covers the pbguest workload only", c.File, c.Workload.Kind)
	}
	v, ok := c.Variants[variant]
	if !ok {
		return "", fmt.Errorf("%s: no variant %q", c.File, variant)
	}
	g := guestcmd.Build(c.Workload, c.Filesystem, seed, scriptPaths)
	q := guestcmd.ShellQuote
	sh := func(argv []string) string { return guestcmd.ShellJoinVars(argv, scriptVars) }
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }

	p("#!/bin/sh")
	p("# Written by patchbay reproducer: one recorded run, without patchbay.")
	p("# Usage: ./run.sh DEVICE  (as root; DEVICE is erased; see README.md)")
	p("set -u")
	p("PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH")
	p(`HERE=$(cd "$(dirname "$0")" && pwd) || exit 2`)
	p(`PBGUEST="$HERE/pbguest"`)
	p("MNT=%s", q(scriptPaths.Mount))
	p("TMPD=%s", q(scriptPaths.Tmp))
	p("MARK=patchbay-repro-$$")
	p(`die() { echo "patchbay-repro: ERROR: $*"; exit 2; }`)
	p(`FAILS=0`)
	p(`fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }`)
	p(`kmsg() { echo "$*" > /dev/kmsg 2>/dev/null; }`)
	p(`# sumkey KEY FILE...: the sum of every "KEY":N in pbguest's one-line JSON.`)
	p(`sumkey() { k=$1; shift; cat "$@" | awk -v k="\"$k\":" '{ while ((i = index($0, k)) > 0) { $0 = substr($0, i + length(k)); s += $0 + 0 } } END { print s + 0 }'; }`)
	p(`maxkey() { k=$1; shift; cat "$@" | awk -v k="\"$k\":" '{ while ((i = index($0, k)) > 0) { $0 = substr($0, i + length(k)); if ($0 + 0 > m) m = $0 + 0 } } END { print m + 0 }'; }`)
	p("")
	p(`[ $# -eq 1 ] || { echo "usage: $0 DEVICE (its contents are destroyed)" >&2; exit 2; }`)
	p("DEV=$1")
	p(`[ -b "$DEV" ] || die "$DEV is not a block device"`)
	p(`[ "$(id -u)" = 0 ] || die "run as root"`)
	p(`[ -x "$PBGUEST" ] || die "$PBGUEST missing"`)
	p(`# Refuse a device that is mounted or swapped on, or has a mounted partition.`)
	p(`REAL=$(readlink -f "$DEV") || die "$DEV: cannot resolve"`)
	p(`while read -r d m rest; do`)
	p(`	case "$d" in "$DEV" | "$REAL" | "$REAL"[0-9]* | "$REAL"p[0-9]*) die "$DEV is mounted ($d on $m): refusing to erase it" ;; esac`)
	p(`	[ "$m" = "$MNT" ] && die "$MNT is in use ($d)"`)
	p(`done < /proc/mounts`)
	p(`while read -r d rest; do`)
	p(`	case "$d" in "$DEV" | "$REAL" | "$REAL"[0-9]* | "$REAL"p[0-9]*) die "$DEV is in use as swap" ;; esac`)
	p(`done < /proc/swaps`)
	p("")
	p("echo %s", q(fmt.Sprintf("patchbay-repro: case %s, variant %s, seed %d", c.Name, variant, seed)))
	p(`rm -rf "$TMPD" && mkdir -p "$TMPD" "$MNT" || die "cannot make $TMPD or $MNT"`)
	p(`kmsg "$MARK start"`)
	p(`kmsg "patchbay: phase setup"`)
	p("%s || die mkfs", sh(g.Mkfs))
	p("%s || die mount", sh(g.Mount))
	p("mkdir -p %s %s || die mkdir", q(scriptPaths.Work()), q(scriptPaths.Donors()))
	p(`%s > "$TMPD/prepare.json" || die "pbguest prepare"`, sh(g.Prepare))
	if g.JournalData {
		w := c.Workload.Files
		p(`# data=journal per inode: every work file must carry the j attribute.`)
		p(`J=$(lsattr %s | awk '$1 ~ /j/' | wc -l)`, q(scriptPaths.Work()))
		p(`[ "$J" -eq %d ] || { echo "FAIL: setup: data journaling set on $J of %d files"; echo "patchbay-repro: FAIL"; exit 1; }`, w, w)
	}
	p("")
	p(`kmsg "patchbay: phase workload"`)
	for _, j := range g.Jobs {
		if j.MkdirDonors != "" {
			p("mkdir -p %s || die mkdir", q(j.MkdirDonors))
		}
	}
	for i, j := range g.Jobs {
		out := `"$TMPD/` + j.Name + `.json"` // names are writer-N, defrag-N
		if j.Result != "" {
			out = q(j.Result) // verify --expect reads it
		}
		p(`%s > %s &`, sh(j.Argv), out)
		p("P%d=$!", i)
	}
	for i, j := range g.Jobs {
		p(`wait "$P%d" || fail "incomplete: %s exited $?"`, i, j.Name)
	}
	p("")
	p(`kmsg "patchbay: phase verify"`)
	for _, ph := range g.Verify {
		if ph.DropCaches {
			p(`sync && echo 3 > /proc/sys/vm/drop_caches || die "drop_caches"`)
		}
		for _, argv := range ph.Before {
			p("%s || die %s", sh(argv), q(argv[0]))
		}
		p(`%s > "$TMPD/verify-%s.json" || fail "incomplete: verify %s"`, sh(ph.Argv), ph.Phase, ph.Phase)
	}
	p("%s || die umount", sh(g.Umount))
	p(`%s > "$TMPD/fsck.txt" 2>&1`, sh(g.Fsck))
	p("FSCK=$?")
	p(`kmsg "$MARK end"`)
	p("")
	p("# Judge as patchbay does (harness.Judge), from the JSON pbguest printed.")
	defrag := `"$TMPD"/defrag-*.json`
	writers := `"$TMPD"/writer-*.json`
	e := v.Expect
	atLeast := func(what, key string, agg func(string) string, min *int) {
		if min != nil {
			p(`N=$(%s); [ "$N" -ge %d ] || fail "%s = $N, expected at least %d"`, agg(key), *min, what, *min)
		}
	}
	sum := func(files string) func(string) string {
		return func(key string) string { return "sumkey " + key + " " + files }
	}
	if c.Workload.Defrag.Workers == 0 {
		defrag = "/dev/null" // no glob that matches nothing
	}
	atLeast("moves", "moved", sum(defrag), e.MinMoved)
	if e.MaxMoved != nil {
		p(`N=$(sumkey moved %s); [ "$N" -le %d ] || fail "moves = $N, expected at most %d"`, defrag, *e.MaxMoved, *e.MaxMoved)
	}
	atLeast("EOPNOTSUPP refusals", "EOPNOTSUPP", sum(defrag), e.MinRefusedEOPNOTSUPP)
	atLeast("a_ops transitions", "transitions", sum(defrag), e.MinTransitions)
	atLeast("work files moved", "files_moved", func(k string) string { return "maxkey " + k + " " + defrag }, e.MinFilesMoved)
	if e.MaxBadBlocks != nil {
		p(`N=$(sumkey bad_total "$TMPD"/verify-*.json); [ "$N" -le %d ] || fail "bad blocks = $N, expected at most %d"`, *e.MaxBadBlocks, *e.MaxBadBlocks)
		p(`for f in %s; do N=$(sumkey readback_bad "$f"); [ "$N" -eq 0 ] || fail "$(basename "$f" .json): $N read-backs did not return the last write"; done`, writers)
		for _, ph := range g.Verify {
			p(`N=$(sumkey bad_total "$TMPD/verify-%s.json"); [ "$N" -eq 0 ] || fail "verify %s: $N bad blocks"`, ph.Phase, ph.Phase)
		}
	}
	if e.FsckClean {
		p(`[ "$FSCK" -eq 0 ] || fail "e2fsck -fn exit $FSCK: file system not clean"`)
	}
	p(`for f in %s; do grep -q '"errors":\["' "$f" && fail "$(basename "$f" .json): write errors"; done`, writers)
	p(`# Kernel reports since this run began (what patchbay's triage reads on the console).`)
	pattern := crashPattern
	if e.NoFindings {
		pattern += "|" + fsPattern
	}
	p(`dmesg 2>/dev/null | awk -v m="$MARK start" 'index($0, m) { on = 1; next } on' | grep -E %s | head -n 20 > "$TMPD/findings.txt"`, q(pattern))
	p(`while read -r line; do fail "kernel: $line"; done < "$TMPD/findings.txt"`)
	p("")
	p(`if [ "$FAILS" -gt 0 ]; then echo "patchbay-repro: FAIL"; exit 1; fi`)
	p(`echo "patchbay-repro: PASS"`)
	return b.String(), nil
}

// Kernel reports that make a run crash or hang (always checked), and the
// file system's own complaints (with expect.no_findings).
const (
	crashPattern = `BUG:|WARNING:|kernel BUG at|general protection fault|invalid opcode|Oops|UBSAN:|Kernel panic|possible (circular|recursive) locking|inconsistent lock state|suspicious RCU usage|bad unlock balance|INFO: task .* blocked for more than|rcu: INFO|self-detected stall`
	fsPattern    = `EXT4-fs error|EXT4-fs warning|JBD2: .*(error|Error)`
)
