package harness

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"time"

	"patchbay/workload/guestcmd"
)

// step is one command of a batch run in a single SSH session.
type step struct {
	name string // saved as name in the run directory when it has a dot
	cmd  string
}

// batch runs steps in order in one SSH session (each session costs a fork
// and an exec of the shell in the guest, ~80 ms under TCG), stopping at the
// first that fails. It returns the stdout of every step that finished, in
// order; stderr of the failed step is in the error. Each step's output is
// followed by a marker line with a per-batch random token, so no output of
// a step can be taken for a marker.
//
// The guest's pending steps (see phase) run first; their outputs are not
// returned.
func (g *guest) batch(ctx context.Context, timeout time.Duration, steps []step) ([][]byte, error) {
	prelude := len(g.pending)
	steps = append(g.pending, steps...)
	g.pending = nil
	outs, err := g.runBatch(ctx, timeout, steps)
	if len(outs) <= prelude {
		return nil, err
	}
	return outs[prelude:], err
}

func (g *guest) runBatch(ctx context.Context, timeout time.Duration, steps []step) ([][]byte, error) {
	tok := make([]byte, 8)
	if _, err := rand.Read(tok); err != nil {
		return nil, err
	}
	mark := "@@patchbay-" + hex.EncodeToString(tok)
	var script strings.Builder
	for i, s := range steps {
		// The step runs in a subshell so its own `set -e` or `exit` ends only it.
		fmt.Fprintf(&script, "( %s ); rc=$?; printf '\\n%s %d %%d\\n' $rc; [ $rc -eq 0 ] || exit $rc\n", s.cmd, mark, i)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var errb bytes.Buffer
	out, stdin := newClockAnswer()
	err := g.m.Run(ctx, script.String(), stdin, out, &errb)
	out.close()
	outs, perr := splitBatch(out.buf.Bytes(), mark, len(steps))
	for i, o := range outs {
		if strings.Contains(steps[i].name, ".") {
			g.save(steps[i].name, o)
		}
	}
	if err == nil && perr != nil {
		err = perr
	}
	if err != nil {
		name := "batch"
		if len(outs) < len(steps) {
			name = steps[len(outs)].name
		}
		if msg := guestcmd.LastLine(errb.String()); msg != "" {
			return outs, fmt.Errorf("%s: %w: %s", name, err, msg)
		}
		return outs, fmt.Errorf("%s: %w", name, err)
	}
	return outs, nil
}

// splitBatch cuts a batch's stdout at its markers: the outputs of the steps
// that exited 0, in order.
func splitBatch(out []byte, mark string, n int) ([][]byte, error) {
	var outs [][]byte
	for i := 0; i < n; i++ {
		prefix := []byte(fmt.Sprintf("\n%s %d ", mark, i))
		j := bytes.Index(out, prefix)
		if j < 0 {
			return outs, nil
		}
		rest := out[j+len(prefix):]
		nl := bytes.IndexByte(rest, '\n')
		if nl < 0 {
			return outs, fmt.Errorf("step %d: truncated marker", i)
		}
		if string(rest[:nl]) != "0" {
			return outs, nil
		}
		outs = append(outs, out[:j])
		out = rest[nl+1:]
	}
	return outs, nil
}

// clockQuestion is what a session's script prints when it wants the host's
// clock on stdin (see refreshStep).
const clockQuestion = "clock?\n"

// clockAnswer is the stdout of a session: it keeps all the session printed
// and answers the clock question on the session's stdin the moment the
// question appears, so the guest's clock is off by one pipe hop and the
// exec of date, not by the session's start.
type clockAnswer struct {
	buf      bytes.Buffer
	stdin    *io.PipeWriter
	answered bool
}

// newClockAnswer returns the stdout and the stdin of a session.
func newClockAnswer() (*clockAnswer, io.Reader) {
	r, w := io.Pipe()
	return &clockAnswer{stdin: w}, r
}

func (a *clockAnswer) Write(p []byte) (int, error) {
	a.buf.Write(p)
	if !a.answered && bytes.Contains(a.buf.Bytes(), []byte(clockQuestion)) {
		a.answered = true
		now := time.Now()
		// The write blocks until the session reads its stdin: not on the
		// goroutine that copies its stdout.
		go func() {
			fmt.Fprintf(a.stdin, "%d.%09d\n", now.Unix(), now.Nanosecond())
			a.stdin.Close()
		}()
	}
	return len(p), nil
}

// close ends the session's stdin (a script that never asked reads EOF).
func (a *clockAnswer) close() { a.stdin.Close() }
