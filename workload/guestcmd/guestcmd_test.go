package guestcmd

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"patchbay/casespec"
)

// Every word survives a real shell unchanged, however hostile.
func TestShellJoinRoundTrip(t *testing.T) {
	words := []string{"plain", "", "two words", "it's", `"dq"`, "$(reboot)", "`id`", "a;b", "x\ny", "*", "~", "-o", "a\\b", "'", "''", "!x", "a=b"}
	cmd := exec.Command("sh", "-c", "for w in "+ShellJoin(words)+`; do printf '[%s]' "$w"; done`)
	got, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	want := ""
	for _, w := range words {
		want += "[" + w + "]"
	}
	if string(got) != want {
		t.Fatalf("round trip:\n got %q\nwant %q", got, want)
	}
	if s := ShellJoinVars([]string{"\x00BIN", "verify", "\x00DEV"}, map[string]string{"\x00BIN": "PBGUEST", "\x00DEV": "DEV"}); s != `"$PBGUEST" verify "$DEV"` {
		t.Fatalf("vars: %s", s)
	}
}

func TestGuestCommands(t *testing.T) {
	c := loadSeeded(t)
	c.Workload.CheckEvery = 4
	c.Workload.Epochs = 2
	c.Filesystem.Mkfs = "mkfs.ext4 -F -L 'x;y'"
	g := Build(c.Workload, c.Filesystem, 77, vmPaths)
	if want := []string{"mkfs.ext4", "-F", "-L", "'x;y'", "/dev/vdb"}; !slices.Equal(g.Mkfs, want) {
		t.Errorf("mkfs %q, want %q", g.Mkfs, want)
	}
	if got := ShellJoin(g.Mkfs); got != `mkfs.ext4 -F -L ''\''x;y'\''' /dev/vdb` {
		t.Errorf("mkfs quoted: %s", got)
	}
	if got := strings.Join(g.Mount, " "); got != "mount -t ext4 -o nodelalloc /dev/vdb /mnt/scratch" {
		t.Errorf("mount: %s", got)
	}
	w := c.Workload
	if len(g.Jobs) != w.MmapWriters+w.PwriteWriters+w.Defrag.Workers {
		t.Fatalf("%d jobs", len(g.Jobs))
	}
	common := "--dir /mnt/scratch/work --files 4 --blocks 256 --writers 3 --seed 77"
	for _, want := range []string{
		"/usr/local/bin/pbguest write " + common + " --mode mmap --id 0 --duration 20s --msync-every 8 --check-every 4 --epochs 2",
		"/usr/local/bin/pbguest write " + common + " --mode pwrite --id 2 --duration 20s --check-every 4 --epochs 2",
		"/usr/local/bin/pbguest defrag " + common + " --id 0 --donor-dir /mnt/scratch/donors/d0 --duration 20s --range-blocks 16 --evict-one-in 4 --epochs 2",
	} {
		found := false
		for _, j := range g.Jobs {
			found = found || strings.Join(j.Argv, " ") == want
		}
		if !found {
			t.Errorf("no job %q", want)
		}
	}
	if g.Jobs[1].Result != "/tmp/pb/writer-1.json" || g.Jobs[3].Result != "" {
		t.Errorf("results: %q %q", g.Jobs[1].Result, g.Jobs[3].Result)
	}
	if len(g.Verify) != 3 || !g.Verify[1].DropCaches || len(g.Verify[2].Before) != 2 {
		t.Fatalf("verify phases: %+v", g.Verify)
	}
	v := strings.Join(g.Verify[2].Argv, " ")
	if !strings.HasSuffix(v, "--phase remount --mmap --expect /tmp/pb/writer-0.json --expect /tmp/pb/writer-1.json --expect /tmp/pb/writer-2.json") {
		t.Errorf("verify: %s", v)
	}
	c.Filesystem.JournalData = true
	c.Workload.Defrag.Tool = casespec.DefragE4defrag
	g = Build(c.Workload, c.Filesystem, 1, vmPaths)
	if g.Prepare[len(g.Prepare)-1] != "--journal-data" || !g.JournalData {
		t.Errorf("prepare: %q", g.Prepare)
	}
	if got := strings.Join(g.Jobs[3].Argv, " "); !strings.Contains(got, " e4defrag ") || strings.Contains(got, "--range-blocks") {
		t.Errorf("e4defrag job: %s", got)
	}
}

// seededCase is the part of the seeded-bug case that the command lines
// come from.
type seededCase struct {
	Filesystem casespec.FilesystemSpec `yaml:"filesystem"`
	Workload   casespec.WorkloadSpec   `yaml:"workload"`
}

// vmPaths are the runner's guest paths (harness).
var vmPaths = Paths{Bin: "/usr/local/bin/pbguest", Dev: "/dev/vdb", Mount: "/mnt/scratch", Tmp: "/tmp/pb"}

// loadSeeded reads the seeded-bug case's file system and workload; the
// file sets every field the command lines use, so no defaults apply.
func loadSeeded(t *testing.T) *seededCase {
	t.Helper()
	data, err := os.ReadFile("../../harness/testdata/seeded-bugs/case.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var c seededCase
	if err := yaml.Unmarshal(data, &c); err != nil {
		t.Fatal(err)
	}
	return &c
}

// The checks case validation runs on the two fields that reach the
// guest's shell as words of their own.
func TestCheckMkfsAndMountOptions(t *testing.T) {
	for _, ok := range []string{"mkfs.ext4 -F -q -b 4096", "mke2fs -t ext4 -O ^has_journal", "mkfs.ext4 -E lazy_itable_init=0,nodiscard"} {
		if err := CheckMkfs(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "mkfs.xfs -f", "mkfs.ext4 -F;reboot", "mkfs.ext4 $(id)", "mkfs.ext4 -L 'x y'"} {
		if err := CheckMkfs(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	for _, ok := range []string{"", "nodelalloc", "data=journal,commit=5", "buffered_iomap"} {
		if err := CheckMountOptions(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"a,,b", "x;touch /tmp/y", "a b", "$(id)", ","} {
		if err := CheckMountOptions(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestLastLine(t *testing.T) {
	for in, want := range map[string]string{
		"":                       "",
		"one":                    "one",
		"first\nmkfs: bad\n\n  ": "mkfs: bad",
		"  a\n b \n":             " b", // the output is trimmed, not the line
	} {
		if got := LastLine(in); got != want {
			t.Errorf("LastLine(%q) = %q, want %q", in, got, want)
		}
	}
}
