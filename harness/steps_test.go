package harness

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"patchbay/workload/guestcmd"
)

// TestClockAnswerOnceWhenAsked: the answer goes on stdin only after the
// question is complete (it may arrive split across writes), exactly once,
// holds the host's time, and stdout keeps every byte.
func TestClockAnswerOnceWhenAsked(t *testing.T) {
	out, stdin := newClockAnswer()
	got := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(stdin)
		got <- string(b)
	}()
	io.WriteString(out, "before\nclo")
	select {
	case s := <-got:
		t.Fatalf("stdin ended before the question was complete: %q", s)
	case <-time.After(50 * time.Millisecond):
	}
	before := time.Now()
	io.WriteString(out, "ck?\nafter\nclock?\n")
	var answer string
	select {
	case answer = <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("no answer on stdin")
	}
	out.close()
	lines := strings.Split(strings.TrimSuffix(answer, "\n"), "\n")
	if len(lines) != 1 {
		t.Fatalf("stdin got %q, want one line", answer)
	}
	sec, err := strconv.ParseFloat(lines[0], 64)
	if err != nil {
		t.Fatalf("answer %q: %v", lines[0], err)
	}
	if d := sec - float64(before.UnixNano())/1e9; d < -0.001 || d > 5 {
		t.Errorf("answer %q is %.3f s from the host's clock", lines[0], d)
	}
	if want := "before\nclock?\nafter\nclock?\n"; out.buf.String() != want {
		t.Errorf("stdout kept %q, want %q", out.buf.String(), want)
	}
}

// TestClockAnswerNeverAsked: a session that never asks reads EOF on stdin
// once the session is over.
func TestClockAnswerNeverAsked(t *testing.T) {
	out, stdin := newClockAnswer()
	fmt.Fprint(out, "no question here\n")
	out.close()
	b, err := io.ReadAll(stdin)
	if err != nil || len(b) != 0 {
		t.Errorf("stdin read %q, %v; want EOF at once", b, err)
	}
	if !bytes.Equal(out.buf.Bytes(), []byte("no question here\n")) {
		t.Errorf("stdout kept %q", out.buf.Bytes())
	}
}

// TestTogetherScriptInRealShell runs together's script in the host's sh:
// the prelude first and in order, the steps at once (step 0 waits for a
// file step 1 makes, so run one after the other it would give up), each
// step's stdout and exit status cut out at its marker, and its stderr told
// apart from the others'.
func TestTogetherScriptInRealShell(t *testing.T) {
	dir := t.TempDir()
	q := guestcmd.ShellQuote(dir)
	prelude := []step{{"first", "echo one > " + q + "/order"}, {"second", "echo two >> " + q + "/order"}}
	steps := []step{
		{"waiter", "i=0; while [ ! -e " + q + "/made ]; do i=$((i+1)); [ $i -lt 500 ] || exit 9; sleep 0.01; done; echo waited"},
		{"maker", "touch " + q + "/made; echo made"},
		{"failer", "echo out; echo first >&2; echo boom >&2; exit 3"},
	}
	mark := "@@patchbay-test"
	cmd := exec.Command("sh", "-c", togetherScript(prelude, steps, mark))
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("script: %v\n%s", err, errb.String())
	}
	outs, codes, err := splitTogether(out.Bytes(), mark, len(steps))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"waited\n", "made\n", "out\n"}
	wantCodes := []int{0, 0, 3}
	if len(outs) != 3 {
		t.Fatalf("outputs %q", outs)
	}
	for i := range want {
		if string(outs[i]) != want[i] || codes[i] != wantCodes[i] {
			t.Errorf("step %d: %q exit %d, want %q exit %d", i, outs[i], codes[i], want[i], wantCodes[i])
		}
	}
	if got := stepStderr(errb.String(), mark, 2); got != "first\nboom" {
		t.Errorf("failer's stderr %q", got)
	}
	if got := stepStderr(errb.String(), mark, 0); got != "" {
		t.Errorf("waiter's stderr %q", got)
	}
	order, err := os.ReadFile(filepath.Join(dir, "order"))
	if err != nil || string(order) != "one\ntwo\n" {
		t.Errorf("prelude ran as %q (%v)", order, err)
	}

	// A failing prelude step ends the script before any step runs.
	cmd = exec.Command("sh", "-c", togetherScript([]step{{"bad", "exit 4"}}, steps, mark))
	out.Reset()
	cmd.Stdout = &out
	err = cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 4 {
		t.Errorf("failing prelude: %v, want exit 4", err)
	}
	if outs, _, _ := splitTogether(out.Bytes(), mark, len(steps)); len(outs) != 0 {
		t.Errorf("steps ran after a failed prelude: %q", outs)
	}
}
