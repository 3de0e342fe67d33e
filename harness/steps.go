package harness

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
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
		if msg := lastLine(errb.String()); msg != "" {
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

// together runs steps at once in one SSH session, after the guest's
// pending steps in order (see phase), and returns each step's stdout and,
// for a step that exited non-zero, an error with its exit status and the
// last line of its stderr. One session instead of one per step saves a
// session's start (~0.13 s under TCG) per step, and the phase marker before
// them needs no session of its own: nothing of the phase starts before it.
// err is set when the session itself failed (a pending step failed, the
// deadline or ctx ended it, the VM went away); outs and errs then hold
// what was reported before.
func (g *guest) together(ctx context.Context, timeout time.Duration, steps []step) (outs [][]byte, errs []error, err error) {
	tok := make([]byte, 8)
	if _, err := rand.Read(tok); err != nil {
		return nil, nil, err
	}
	mark := "@@patchbay-" + hex.EncodeToString(tok)
	prelude := g.pending
	g.pending = nil
	script := togetherScript(prelude, steps, mark)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var errb bytes.Buffer
	out, stdin := newClockAnswer()
	err = g.m.Run(ctx, script, stdin, out, &errb)
	out.close()
	outs, codes, perr := splitTogether(out.buf.Bytes(), mark, len(steps))
	errs = make([]error, len(steps))
	for i, code := range codes {
		if code == 0 {
			continue
		}
		errs[i] = fmt.Errorf("%s: exit status %d", steps[i].name, code)
		if msg := lastLine(stepStderr(errb.String(), mark, i)); msg != "" {
			errs[i] = fmt.Errorf("%w: %s", errs[i], msg)
		}
	}
	if err == nil {
		err = perr
	}
	if err != nil {
		name := "steps"
		if len(outs) == 0 && len(prelude) > 0 {
			name = prelude[0].name
		}
		if msg := lastLine(errb.String()); msg != "" && !strings.HasPrefix(msg, mark) {
			err = fmt.Errorf("%s: %w: %s", name, err, msg)
		} else {
			err = fmt.Errorf("%s: %w", name, err)
		}
		for i := len(outs); i < len(steps); i++ {
			errs[i] = err // no result: the session ended first
		}
	}
	return outs, errs, err
}

// togetherScript is the shell script of together: the prelude in order
// (the first failure ends it), then the steps at once, each one's output in
// a file of its own in a fresh directory (the guest's /tmp is a tmpfs),
// printed once every step has ended, with a marker line holding its exit
// status; stderr lines carry the marker and the step's index.
func togetherScript(prelude, steps []step, mark string) string {
	var script strings.Builder
	for _, p := range prelude {
		fmt.Fprintf(&script, "( %s ) || exit $?\n", p.cmd)
	}
	script.WriteString("d=$(mktemp -d) || exit 1\n")
	for i, s := range steps {
		fmt.Fprintf(&script, "( %s ) > \"$d/%d\" 2> \"$d/%d.err\" &\np%d=$!\n", s.cmd, i, i, i)
	}
	for i := range steps {
		fmt.Fprintf(&script, "wait $p%d; r%d=$?\n", i, i)
	}
	for i := range steps {
		fmt.Fprintf(&script, "cat \"$d/%d\"; printf '\\n%s %d %%d\\n' $r%d; sed 's/^/%s %d /' \"$d/%d.err\" >&2\n", i, mark, i, i, mark, i, i)
	}
	script.WriteString("rm -rf \"$d\"\n")
	return script.String()
}

// splitTogether cuts the stdout of together at its markers: each step's
// output and exit status, for the steps whose marker came.
func splitTogether(out []byte, mark string, n int) ([][]byte, []int, error) {
	var outs [][]byte
	var codes []int
	for i := 0; i < n; i++ {
		prefix := []byte(fmt.Sprintf("\n%s %d ", mark, i))
		j := bytes.Index(out, prefix)
		if j < 0 {
			return outs, codes, nil
		}
		rest := out[j+len(prefix):]
		nl := bytes.IndexByte(rest, '\n')
		if nl < 0 {
			return outs, codes, fmt.Errorf("step %d: truncated marker", i)
		}
		code, err := strconv.Atoi(string(rest[:nl]))
		if err != nil {
			return outs, codes, fmt.Errorf("step %d: exit status %q", i, rest[:nl])
		}
		outs, codes = append(outs, out[:j]), append(codes, code)
		out = rest[nl+1:]
	}
	return outs, codes, nil
}

// stepStderr is step i's stderr in together's session stderr, where each
// of its lines is prefixed with the marker and i.
func stepStderr(stderr, mark string, i int) string {
	prefix := fmt.Sprintf("%s %d ", mark, i)
	var lines []string
	for _, l := range strings.Split(stderr, "\n") {
		if rest, ok := strings.CutPrefix(l, prefix); ok {
			lines = append(lines, rest)
		}
	}
	return strings.Join(lines, "\n")
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
