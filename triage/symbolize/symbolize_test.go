package symbolize

import (
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

const program = `int inner(int x)
{
	return x * 3;
}

int outer(int x)
{
	int y = x + 1;
	return inner(y) + 2;
}

int main(void)
{
	return outer(1);
}
`

// build compiles program with debug info (and once without) and returns
// the binaries and the symbol table.
func build(t *testing.T, debug bool) string {
	t.Helper()
	if _, err := exec.LookPath("gcc"); err != nil || !Available() {
		t.Skip("gcc or addr2line not installed")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "prog.c")
	os.WriteFile(src, []byte(program), 0o644)
	bin := filepath.Join(dir, "prog")
	args := []string{"-O0", "-fno-omit-frame-pointer", "-o", bin, src}
	if debug {
		args = append([]string{"-g"}, args...)
	}
	if out, err := exec.Command("gcc", args...).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	return bin
}

func symbolAt(t *testing.T, bin, name string) (uint64, uint64) {
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	syms, _ := f.Symbols()
	for _, s := range syms {
		if s.Name == name {
			return s.Value, s.Size
		}
	}
	t.Fatalf("no symbol %s", name)
	return 0, 0
}

func TestReportGetsFileAndLine(t *testing.T) {
	bin := build(t, true)
	s, err := New(bin)
	if err != nil {
		t.Fatal(err)
	}
	_, outerSize := symbolAt(t, bin, "outer")
	report := strings.Join([]string{
		"[   12.0][ T71] RIP: 0010:inner+0x0/0x10",
		"[   12.1][ T71] Call Trace:",
		fmt.Sprintf("[   12.1][ T71]  outer+0x%x/0x%x", outerSize-4, outerSize),
		"[   12.1][ T71]  not_a_symbol_here+0x1/0x2",
		"[   12.1][ T71] ---[ end trace ]---",
	}, "\n")
	got, err := s.Report(context.Background(), report)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(got, "\n")
	// inner starts at line 1 of prog.c; outer's body is lines 6-10.
	if !regexp.MustCompile(`prog\.c:[12]$`).MatchString(lines[0]) {
		t.Errorf("RIP line not symbolized to inner's first lines: %q", lines[0])
	}
	m := regexp.MustCompile(`prog\.c:(\d+)$`).FindStringSubmatch(lines[2])
	if m == nil {
		t.Fatalf("call trace line not symbolized: %q", lines[2])
	}
	if n, _ := strconv.Atoi(m[1]); n < 6 || n > 10 {
		t.Errorf("outer frame at prog.c:%d, want within outer (6-10)", n)
	}
	if lines[3] != "[   12.1][ T71]  not_a_symbol_here+0x1/0x2" || lines[1] != "[   12.1][ T71] Call Trace:" {
		t.Errorf("lines without a known frame changed: %q", lines)
	}
}

func TestNoDebugInfo(t *testing.T) {
	bin := build(t, false)
	if _, err := New(bin); !errors.Is(err, ErrNoDebugInfo) {
		t.Fatalf("err = %v, want ErrNoDebugInfo", err)
	}
}

func TestParseAddr2lineInlined(t *testing.T) {
	out := "0x0000000000001139\ninner\n/build/linux/fs/ext4/inode.c:12\nouter\n/build/linux/fs/ext4/move_extent.c:640 (discriminator 3)\n0x0000000000002000\n??\n??:0\n"
	got := parseAddr2line([]byte(out))
	if want := "fs/ext4/move_extent.c:640 fs/ext4/inode.c:12 (inlined inner)"; got[0x1139] != want {
		t.Errorf("got %q, want %q", got[0x1139], want)
	}
	if got[0x2000] != "" {
		t.Errorf("unknown address symbolized: %q", got[0x2000])
	}
}
