// Package guestcmd is the guest workload driver's command lines: every
// pbguest, mkfs, mount, verify and e2fsck command of a run of the pbguest
// workload, built from the case's data, and the POSIX shell quoting they are
// written with. It is the one source of these lines for the runner, the
// power cut, the batched setup and verify steps and the reproducer script.
package guestcmd

import (
	"fmt"
	"strings"

	"patchbay/casespec"
)

// AckDev is the guest device of the ack disk in power-cut runs: the
// second raw disk, after the scratch disk.
const AckDev = "/dev/vdc"

// ReplayPhase names the verify pass after the power cut.
const ReplayPhase = "replay"

// MountOpts is the -o value of the scratch mount: the case's
// mount_options, or "defaults".
func MountOpts(o string) string {
	if o == "" {
		return "defaults"
	}
	return o
}

// Paths are where a run's pieces live on the machine under test. The
// runner uses its fixed VM paths; a reproducer script puts placeholders in
// Bin and Dev and renders them as shell variables (see ShellJoinVars).
type Paths struct {
	Bin   string // the pbguest binary
	Dev   string // the scratch block device
	Mount string // where the scratch file system is mounted
	Tmp   string // writers' JSON results, read back by verify
}

// Work is the folder of the work files.
func (p Paths) Work() string { return p.Mount + "/work" }

// Donors is the folder of the defrag workers' donor folders.
func (p Paths) Donors() string { return p.Mount + "/donors" }

// WriterResult is where writer i's JSON goes (verify --expect reads it).
func (p Paths) WriterResult(i int) string { return fmt.Sprintf("%s/writer-%d.json", p.Tmp, i) }

// Job is one concurrent workload process: a writer or a defrag worker.
type Job struct {
	Name   string   // writer-N or defrag-N
	Argv   []string // the pbguest command line
	Defrag bool
	// Result is where a writer's JSON goes: verify --expect reads it.
	Result string
	// MkdirDonors is the donor folder a defrag worker needs first ("" for
	// writers and the e4defrag tool, which makes its own).
	MkdirDonors string
}

// VerifyPhase is one verify pass and what runs before it.
type VerifyPhase struct {
	Phase string
	// Before are commands run first, in order, each an argv, except that
	// DropCaches asks for `sync; echo 3 > /proc/sys/vm/drop_caches`, which
	// is a redirection and not a command.
	Before     [][]string
	DropCaches bool
	Argv       []string
}

// Commands are the command lines of one run of the pbguest workload,
// in the order they run: the one source of truth for the runner and for
// `patchbay reproducer`, so neither can drift from the other.
type Commands struct {
	Mkfs    []string // filesystem.mkfs split into words, device appended
	Mount   []string // mount -t ext4 -o OPTS DEV MOUNT
	Umount  []string
	Prepare []string
	Jobs    []Job
	Verify  []VerifyPhase
	Fsck    []string // e2fsck -fn DEV: exit 0 clean, 4 or more errors left
	// JournalData: after prepare, every work file must carry the j
	// attribute (lsattr), else the setup did not take effect.
	JournalData bool
	// VerifyAcks checks, after a power cut and the journal replay, every
	// block against its last acknowledged generation (workload.power_cut).
	VerifyAcks []string
}

// Build returns the command lines of a run with the given seed for a
// case's pbguest workload w on file system fs (not for workload.kind fio).
func Build(w casespec.WorkloadSpec, fs casespec.FilesystemSpec, seed uint64, p Paths) Commands {
	writers := w.MmapWriters + w.PwriteWriters
	common := []string{"--dir", p.Work(), "--files", fmt.Sprint(w.Files), "--blocks", fmt.Sprint(w.Blocks),
		"--writers", fmt.Sprint(writers), "--seed", fmt.Sprint(seed)}
	sub := func(name string, extra ...string) []string {
		argv := append([]string{p.Bin, name}, common...)
		return append(argv, extra...)
	}
	num := func(argv []string, flag string, v int) []string {
		if v > 0 {
			argv = append(argv, flag, fmt.Sprint(v))
		}
		return argv
	}
	mount := []string{"mount", "-t", "ext4", "-o", MountOpts(fs.MountOptions), p.Dev, p.Mount}
	g := Commands{
		Mkfs:        append(strings.Fields(fs.Mkfs), p.Dev),
		Mount:       mount,
		Umount:      []string{"umount", p.Mount},
		Prepare:     sub("prepare"),
		Fsck:        []string{"e2fsck", "-fn", p.Dev},
		JournalData: fs.JournalData,
	}
	if fs.JournalData {
		g.Prepare = append(g.Prepare, "--journal-data")
	}
	dur := w.Duration.D().String()
	for i := 0; i < writers; i++ {
		mode := "mmap"
		if i >= w.MmapWriters {
			mode = "pwrite"
		}
		argv := sub("write", "--mode", mode, "--id", fmt.Sprint(i), "--duration", dur)
		if mode == "mmap" {
			argv = num(argv, "--msync-every", w.MsyncEvery)
		}
		argv = num(argv, "--check-every", w.CheckEvery)
		argv = num(argv, "--fsync-every", w.FsyncEvery)
		argv = num(argv, "--fdatasync-every", w.FdatasyncEvery)
		if w.Epochs > 1 {
			argv = num(argv, "--epochs", w.Epochs)
		}
		if w.PowerCut != nil {
			// Acknowledged generations go to the ack disk, read after the cut.
			argv = append(argv, "--ack-dev", AckDev)
		}
		g.Jobs = append(g.Jobs, Job{Name: fmt.Sprintf("writer-%d", i), Argv: argv, Result: p.WriterResult(i)})
	}
	for i := 0; i < w.Defrag.Workers; i++ {
		donors := fmt.Sprintf("%s/d%d", p.Donors(), i)
		job := Job{Name: fmt.Sprintf("defrag-%d", i), Defrag: true, MkdirDonors: donors}
		if w.Defrag.Tool == casespec.DefragE4defrag {
			job.Argv = sub("e4defrag", "--id", fmt.Sprint(i), "--duration", dur)
		} else {
			argv := sub("defrag", "--id", fmt.Sprint(i), "--donor-dir", donors, "--duration", dur,
				"--range-blocks", fmt.Sprint(w.Defrag.RangeBlocks))
			if w.Defrag.Rejournal {
				argv = append(argv, "--rejournal")
			}
			if w.Defrag.Donor != "" {
				argv = append(argv, "--donor", w.Defrag.Donor)
			}
			argv = num(argv, "--evict-one-in", w.Defrag.EvictOneIn)
			if w.Epochs > 1 {
				argv = num(argv, "--epochs", w.Epochs)
			}
			job.Argv = argv
		}
		g.Jobs = append(g.Jobs, job)
	}
	if w.PowerCut != nil {
		g.VerifyAcks = sub("verify", "--phase", ReplayPhase, "--acks", AckDev)
	}
	var expect []string
	for _, j := range g.Jobs {
		if !j.Defrag {
			expect = append(expect, "--expect", j.Result)
		}
	}
	verify := func(phase string) []string {
		return append(sub("verify", "--phase", phase, "--mmap"), expect...)
	}
	g.Verify = []VerifyPhase{
		{Phase: "live", Argv: verify("live")},
		{Phase: "dropcache", DropCaches: true, Argv: verify("dropcache")},
		{Phase: "remount", Before: [][]string{g.Umount, mount}, Argv: verify("remount")},
	}
	return g
}

// ShellQuote quotes s as one word for a POSIX shell: single quotes, with
// each ' written as '\”. Words of only safe characters are left bare.
func ShellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// ShellJoin quotes every word of argv for a POSIX shell.
func ShellJoin(argv []string) string { return ShellJoinVars(argv, nil) }

// ShellJoinVars is ShellJoin, except that a word equal to a key of vars is
// written as the double-quoted shell variable named by its value.
func ShellJoinVars(argv []string, vars map[string]string) string {
	words := make([]string, len(argv))
	for i, a := range argv {
		if v, ok := vars[a]; ok {
			words[i] = `"$` + v + `"`
		} else {
			words[i] = ShellQuote(a)
		}
	}
	return strings.Join(words, " ")
}

// LastLine is the last line of a guest command's output, surrounding space
// trimmed: what an error quotes of stderr (or of a tool's output).
func LastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndex(s, "\n"); i >= 0 {
		return s[i+1:]
	}
	return s
}
