package harness

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"
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
