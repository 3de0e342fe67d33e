package guest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The progress redraw e4defrag prints before each file name.
const e4redraw = "\x1b[79;0H\x1b[K"

// TestParseE4defrag classifies output captured from e2fsprogs 1.47.0's
// e4defrag -v (stdout and stderr apart, as the worker captures them), plus
// the shapes its source can print that are hard to provoke.
func TestParseE4defrag(t *testing.T) {
	const banner = "e4defrag 1.47.0 (5-Feb-2023)\next4 defragmentation for /m/work/f001\n"
	progress := banner + "[1/1]" + e4redraw + "[1/1]/m/work/f001:\t  0%"
	for _, c := range []struct {
		name, stdout, stderr, class string
		unrecognised                int
	}{
		{"defragmented", progress + e4redraw + "[1/1]/m/work/f001:\t100%  extents: 18 -> 1\t[ OK ]\n Success:\t\t\t[1/1]\n", "", "ok", 0},
		{"skipped", banner + "[1/1]" + e4redraw + "[1/1]/m/work/f001:\t100%  extents: 1 -> 1\t[ OK ]\n Success:\t\t\t[1/1]\n", "", "ok_unchanged", 0},
		{"eopnotsupp", progress + "\n Success:\t\t\t[0/1]\n", "\tFailed to defrag with EXT4_IOC_MOVE_EXT ioctl:Operation not supported\t[ NG ]\n", "move_ext:EOPNOTSUPP", 0},
		{"ebusy", progress + "\n Success:\t\t\t[0/1]\n", "\tFailed to defrag with EXT4_IOC_MOVE_EXT ioctl:Device or resource busy\t[ NG ]\n", "move_ext:EBUSY", 0},
		{"enodata", progress + "\n Success:\t\t\t[0/1]\n", "\tFailed to defrag with EXT4_IOC_MOVE_EXT ioctl:No data available\t[ NG ]\n", "move_ext:ENODATA", 0},
		{"errno clobbered", progress + "\n Success:\t\t\t[0/1]\n", "\tFailed to defrag with EXT4_IOC_MOVE_EXT ioctl:Success\t[ NG ]\n", "move_ext:no_errno", 0},
		{"merged streams", progress + "\tFailed to defrag with EXT4_IOC_MOVE_EXT ioctl:Operation not supported\t[ NG ]\n\n Success:\t\t\t[0/1]\n", "", "move_ext:EOPNOTSUPP", 0},
		{"fallocate enospc", banner + "[1/1]", " \"/m/work/f001\"\n\tFailed to fallocate:No space left on device\t[ NG ]\n", "fallocate:ENOSPC", 0},
		{"unknown strerror", banner + "[1/1]", " \"/m/work/f001\"\n\tFailed to fallocate:Frobnicated\t[ NG ]\n", "fallocate:unknown_errno", 0},
		{"free space check", banner + "[1/1]" + e4redraw + "[1/1] \"/m/work/f001\"\t\t  extents: 3 -> 3\n Success:\t\t\t[0/1]\n", "\tDefrag size is larger than filesystem's free space\t\t[ NG ]\n", "no_space", 0},
		{"missing file", "e4defrag 1.47.0 (5-Feb-2023)\n", "Failed to get file information: No such file or directory\n \"nonexist\"\n", "stat:ENOENT", 0},
		{"not verbose", banner + e4redraw + "[1/1]/m/work/f001:\t  0%\t[ NG ]\n Success:\t\t\t[0/1]\n", "", "ng", 0},
		{"usage", "e4defrag 1.47.0 (5-Feb-2023)\nUsage\t: e4defrag [-v] file...| directory...| device...\n\t: e4defrag  -c  file...| directory...| device...\n", "", "usage", 0},
		{"unknown NG", banner, "\tSomething new happened\t[ NG ]\n", "ng", 1},
		{"garbage", "", "segfault in libext2fs\n", "no_outcome", 1},
		{"failure beats ok", progress + e4redraw + "[1/1]/m/work/f001:\t100%  extents: 18 -> 1\t[ OK ]\n", "\tFailed to free page:Invalid argument\t[ NG ]\n", "fadvise:EINVAL", 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := ParseE4defrag(c.stdout, c.stderr)
			if o.Class != c.class || len(o.Unrecognised) != c.unrecognised {
				t.Fatalf("class %q unrecognised %q, want %q with %d unrecognised", o.Class, o.Unrecognised, c.class, c.unrecognised)
			}
			if strings.HasPrefix(c.stdout, "e4defrag 1.47.0") && o.Version != "1.47.0" {
				t.Fatalf("version %q", o.Version)
			}
		})
	}
}

// fakeTool writes an executable shell script standing in for e4defrag.
func fakeTool(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "e4defrag")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestE4defragCountsClaims runs a fake tool that lies the way e4defrag
// can (exit 0 after a failure) and checks every counter and that only the
// work files are passed, with -v.
func TestE4defragCountsClaims(t *testing.T) {
	l := testLayout(t, 1)
	tool := fakeTool(t, `
case "$1 $2" in
"-v `+l.Dir+`/f00"[01]) ;;
*) echo "bad args: $*"; exit 3 ;;
esac
echo "e4defrag 9.9.9 (1-Jan-2030)"
echo "[1/1]$2:	  0%"
printf '\tFailed to defrag with EXT4_IOC_MOVE_EXT ioctl:Device or resource busy\t[ NG ]\n' >&2
echo "odd line $2" >&2
exit 0
`)
	rep, err := E4defrag(context.Background(), E4defragConfig{Layout: l, Duration: 300 * time.Millisecond, Tool: tool, KeepLines: 3})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", rep)
	cut := rep.ExitStatus["cut_at_end"]
	n := int(rep.Attempts) - cut
	if n < 2 || cut > 1 || rep.Tool != "e4defrag" || rep.ToolPath != tool || rep.ToolVersion != "9.9.9" {
		t.Fatalf("report header %+v", rep)
	}
	if busy := rep.Results["move_ext:EBUSY"]; busy < n || busy+rep.Results["no_outcome"] != int(rep.Attempts) || rep.ExitStatus["0"] != n || rep.Exit0NotOK != int64(n) || rep.ExitNonzeroOK != 0 {
		t.Fatalf("results %v exit %v exit0_not_ok %d", rep.Results, rep.ExitStatus, rep.Exit0NotOK)
	}
	if rep.UnrecognisedTotal < n || rep.UnrecognisedTotal > n+cut || len(rep.Unrecognised) != 3 || !strings.HasPrefix(rep.Unrecognised[2], "odd line "+l.Dir+"/f00") {
		t.Fatalf("unrecognised %d %q", rep.UnrecognisedTotal, rep.Unrecognised)
	}
	if rep.ElapsedS < 0.3 || rep.ToolS <= 0 || rep.ToolS > rep.ElapsedS || rep.InvocationsPerS <= 0 {
		t.Fatalf("times: elapsed %v tool %v rate %v", rep.ElapsedS, rep.ToolS, rep.InvocationsPerS)
	}
}

// TestE4defragSameSeedSameFiles: the file sequence comes from --seed and --id.
func TestE4defragSameSeedSameFiles(t *testing.T) {
	l := testLayout(t, 1)
	l.Files = 50
	log := filepath.Join(t.TempDir(), "calls")
	tool := fakeTool(t, `echo "$2" >> `+log+"\n")
	// The sequence is fixed, its length is not: a loaded host forks the
	// stand-in slowly, so run longer until five calls were made.
	calls := func(id int) []string {
		var got []string
		for d := 100 * time.Millisecond; len(got) < 5 && d <= 2*time.Second; d *= 4 {
			os.Remove(log)
			if _, err := E4defrag(context.Background(), E4defragConfig{Layout: l, ID: id, Duration: d, Tool: tool}); err != nil {
				t.Fatal(err)
			}
			data, err := os.ReadFile(log)
			if err != nil {
				t.Fatal(err)
			}
			got = strings.Fields(string(data))
		}
		return got
	}
	a, b, c := calls(0), calls(0), calls(1)
	n := min(len(a), len(b), len(c), 5)
	if n < 3 {
		t.Fatalf("too few calls: %d %d %d", len(a), len(b), len(c))
	}
	if strings.Join(a[:n], " ") != strings.Join(b[:n], " ") || strings.Join(a[:n], " ") == strings.Join(c[:n], " ") {
		t.Fatalf("file sequences: id0 %v, id0 again %v, id1 %v", a[:n], b[:n], c[:n])
	}
}

// TestE4defragKillsChild: a hung tool (with a child of its own) is killed
// at the per-invocation timeout, at the end of the duration and on cancel.
func TestE4defragKillsChild(t *testing.T) {
	l := testLayout(t, 1)
	tool := fakeTool(t, "sleep 30\n")
	run := func(ctx context.Context, d, timeout time.Duration) E4defragReport {
		t.Helper()
		start := time.Now()
		rep, err := E4defrag(ctx, E4defragConfig{Layout: l, Duration: d, Timeout: timeout, Tool: tool})
		if err != nil {
			t.Fatal(err)
		}
		if el := time.Since(start); el > d+3*time.Second {
			t.Fatalf("took %s for a %s run: child not killed", el, d)
		}
		if rep.Results["no_outcome"] != int(rep.Attempts) {
			t.Fatalf("killed runs should have no outcome: %v", rep.Results)
		}
		return rep
	}
	if rep := run(context.Background(), time.Second, 200*time.Millisecond); rep.ExitStatus["timeout"] < 3 || rep.ExitStatus["cut_at_end"] > 1 {
		t.Fatalf("timeouts: %v", rep.ExitStatus)
	}
	if rep := run(context.Background(), 300*time.Millisecond, time.Minute); rep.Attempts != 1 || rep.ExitStatus["cut_at_end"] != 1 {
		t.Fatalf("cut at end: attempts %d %v", rep.Attempts, rep.ExitStatus)
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	if rep := run(ctx, time.Minute, time.Minute); rep.Attempts != 1 || rep.ExitStatus["cancelled"] != 1 || rep.ElapsedS > 5 {
		t.Fatalf("cancel: attempts %d %v elapsed %v", rep.Attempts, rep.ExitStatus, rep.ElapsedS)
	}
}

func TestE4defragMissingTool(t *testing.T) {
	l := testLayout(t, 1)
	if _, err := E4defrag(context.Background(), E4defragConfig{Layout: l, Duration: time.Second, Tool: filepath.Join(l.Dir, "none")}); err == nil {
		t.Fatal("missing explicit tool accepted")
	}
	t.Setenv("PATH", t.TempDir())
	old := e4defragFallbacks
	e4defragFallbacks = []string{filepath.Join(l.Dir, "nope")}
	defer func() { e4defragFallbacks = old }()
	_, err := E4defrag(context.Background(), E4defragConfig{Layout: l, Duration: time.Second})
	if err == nil || !strings.Contains(err.Error(), "e4defrag not found") {
		t.Fatalf("no e4defrag anywhere: err %v", err)
	}
}

// fragment rewrites every work file block by block, interleaving the
// files with an fdatasync after each block, so each file ends up in many
// extents and e4defrag has something to do. The content is unchanged.
func fragment(t *testing.T, l Layout) {
	t.Helper()
	data := make([][]byte, l.Files)
	fds := make([]int, l.Files)
	for f := range l.Files {
		var err error
		if data[f], err = os.ReadFile(l.Path(f)); err != nil {
			t.Fatal(err)
		}
		if fds[f], err = unix.Open(l.Path(f), unix.O_RDWR|unix.O_TRUNC, 0); err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fds[f])
	}
	for b := range l.Blocks {
		for f, fd := range fds {
			off := b * l.BlockSize
			if _, err := unix.Pwrite(fd, data[f][off:off+l.BlockSize], int64(off)); err != nil {
				t.Fatal(err)
			}
			if err := unix.Fdatasync(fd); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func requireE4defrag(t *testing.T) {
	t.Helper()
	if _, err := FindE4defrag(""); err != nil {
		t.Skip(err)
	}
}

// TestE4defragReal runs the real tool on fragmented work files on a
// loop-mounted ext4: it must claim at least one real defrag, no failures,
// and leave the data intact.
func TestE4defragReal(t *testing.T) {
	requireE4defrag(t)
	l := ext4Layout(t, 1, "")
	if _, err := Prepare(l, false); err != nil {
		t.Fatal(err)
	}
	fragment(t, l)
	rep, err := E4defrag(context.Background(), E4defragConfig{Layout: l, Duration: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", rep)
	cut := rep.ExitStatus["cut_at_end"]
	n := int(rep.Attempts) - cut
	// The invocation running when the duration ends is killed and counts
	// whatever it printed by then.
	if cut > 1 || rep.Results["no_outcome"] > cut || rep.ExitNonzeroOK != 0 || rep.Exit0NotOK != 0 {
		t.Fatalf("cut_at_end %d, no_outcome %d, exit mismatches %d %d", cut, rep.Results["no_outcome"], rep.ExitNonzeroOK, rep.Exit0NotOK)
	}
	if rep.Results["ok"] == 0 || rep.Results["ok"]+rep.Results["ok_unchanged"]+rep.Results["no_outcome"] != int(rep.Attempts) || rep.ExitStatus["0"] != n || rep.ToolVersion == "" {
		t.Fatalf("e4defrag on plain ext4: %+v", rep)
	}
	if rep.UnrecognisedTotal != 0 {
		t.Fatalf("unrecognised output: %q", rep.Unrecognised)
	}
	verifyAllOK(t, l, nil)
}

// TestE4defragRealDataJournal: with data=journal the kernel refuses every
// move and e4defrag says so ("Operation not supported"), exiting 1.
func TestE4defragRealDataJournal(t *testing.T) {
	requireE4defrag(t)
	l := ext4Layout(t, 1, "data=journal")
	if _, err := Prepare(l, false); err != nil {
		t.Fatal(err)
	}
	fragment(t, l)
	rep, err := E4defrag(context.Background(), E4defragConfig{Layout: l, Duration: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", rep)
	cut := rep.ExitStatus["cut_at_end"]
	n := int(rep.Attempts) - cut
	// e4defrag sometimes prints strerror(0) for the refusal ("ioctl:Success").
	refused := rep.Results["move_ext:EOPNOTSUPP"] + rep.Results["move_ext:no_errno"]
	if n == 0 || rep.Results["move_ext:EOPNOTSUPP"] == 0 || refused+rep.Results["no_outcome"] != int(rep.Attempts) || rep.Results["no_outcome"] > cut || rep.ExitStatus["1"] != n {
		t.Fatalf("e4defrag with data=journal: %+v", rep)
	}
	verifyAllOK(t, l, nil)
}
