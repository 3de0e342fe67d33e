package reproducer

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"patchbay/casespec"
	"patchbay/harness"
	"patchbay/workload/guestcmd"
)

func seeded(t *testing.T) *harness.Case {
	t.Helper()
	c, err := harness.LoadCase("../harness/testdata/seeded-bugs/case.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// The script is valid sh and carries every command line of the run,
// quoted: hostile case fields stay data.
func TestScriptHostileFields(t *testing.T) {
	c := seeded(t)
	c.Filesystem.Mkfs = `mkfs.ext4 -F -L $(touch${IFS}/tmp/pwned) -q`
	c.Filesystem.MountOptions = "nodelalloc;reboot"
	c.Name = "x'\n$(reboot)"
	s, err := Script(c, "lost-dirty", 42)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "run.sh")
	if err := os.WriteFile(path, []byte(s), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("sh", "-n", path).CombinedOutput(); err != nil {
		t.Fatalf("sh -n: %v\n%s", err, out)
	}
	for _, want := range []string{
		`mkfs.ext4 -F -L '$(touch${IFS}/tmp/pwned)' -q "$DEV" || die mkfs`,
		`mount -t ext4 -o 'nodelalloc;reboot' "$DEV" /mnt/scratch || die mount`,
		`"$PBGUEST" prepare --dir /mnt/scratch/work --files 4 --blocks 256 --writers 3 --seed 42 > "$TMPD/prepare.json"`,
		`"$PBGUEST" defrag --dir /mnt/scratch/work --files 4 --blocks 256 --writers 3 --seed 42 --id 0 --donor-dir /mnt/scratch/donors/d0 --duration 20s --range-blocks 16 --evict-one-in 4 > "$TMPD/defrag-0.json" &`,
		`sync && echo 3 > /proc/sys/vm/drop_caches`,
		`"$PBGUEST" verify --dir /mnt/scratch/work --files 4 --blocks 256 --writers 3 --seed 42 --phase remount --mmap --expect /tmp/pbrepro/writer-0.json`,
		`e2fsck -fn "$DEV" > "$TMPD/fsck.txt" 2>&1`,
		`fail "moves = $N, expected at least 1"`,
		`fail "e2fsck -fn exit $FSCK: file system not clean"`,
	} {
		if !strings.Contains(s, want) {
			t.Errorf("script lacks %q", want)
		}
	}
	// The name is echoed as one quoted word, never as code or a comment line.
	if !strings.Contains(s, `echo 'patchbay-repro: case x'\''`+"\n"+`$(reboot), variant lost-dirty, seed 42'`) {
		t.Errorf("case name not quoted:\n%s", s)
	}
	// Every guestcmd.Build line is in the script: no flag typed twice.
	g := guestcmd.Build(c.Workload, c.Filesystem, 42, scriptPaths)
	for _, j := range g.Jobs {
		if !strings.Contains(s, guestcmd.ShellJoinVars(j.Argv, scriptVars)+" > ") {
			t.Errorf("job %s missing", j.Name)
		}
	}
}

func TestScriptJournalDataAndRefusals(t *testing.T) {
	c := seeded(t)
	c.Filesystem.JournalData = true
	s, err := Script(c, "stock", 1)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(s, "--seed 1 --journal-data >") || !strings.Contains(s, `lsattr /mnt/scratch/work | awk '$1 ~ /j/'`) {
		t.Errorf("journal data setup missing")
	}
	c.Workload.Kind = casespec.WorkloadFio
	if _, err := Script(c, "stock", 1); err == nil || !strings.Contains(err.Error(), "workload.kind fio") {
		t.Errorf("fio workload: %v", err)
	}
	c.Workload.Kind = casespec.WorkloadPatchbay
	if _, err := Script(c, "nope", 1); err == nil {
		t.Errorf("unknown variant accepted")
	}
}

// The script refuses, before writing anything, a non-device and a mounted
// device (this host's own root).
func TestScriptRefusesMountedDevice(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the script checks for it first")
	}
	dir := t.TempDir()
	s, err := Script(seeded(t), "stock", 1)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "run.sh"), []byte(s), 0o755)
	os.WriteFile(filepath.Join(dir, "pbguest"), []byte("#!/bin/sh\nexit 9\n"), 0o755)
	run := func(dev string) (string, int) {
		out, err := exec.Command("sh", filepath.Join(dir, "run.sh"), dev).CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(out), code
	}
	if out, code := run(filepath.Join(dir, "run.sh")); code != 2 || !strings.Contains(out, "is not a block device") {
		t.Errorf("regular file: exit %d %q", code, out)
	}
	if out, code := run(""); code != 2 || !strings.Contains(out, "is not a block device") {
		t.Errorf("empty: exit %d %q", code, out)
	}
	dev := mountedBlockDevice(t)
	if dev == "" {
		t.Skip("no mounted block device in /proc/mounts")
	}
	out, code := run(dev)
	if code != 2 || !strings.Contains(out, "is mounted") {
		t.Errorf("mounted %s: exit %d %q", dev, code, out)
	}
}

func mountedBlockDevice(t *testing.T) string {
	f, err := os.Open("/proc/mounts")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		d, _, _ := strings.Cut(sc.Text(), " ")
		if st, err := os.Stat(d); err == nil && st.Mode()&os.ModeDevice != 0 && st.Mode()&os.ModeCharDevice == 0 {
			return d
		}
	}
	return ""
}
