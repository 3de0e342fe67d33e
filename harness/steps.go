package harness

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
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
func (g *guest) batch(ctx context.Context, timeout time.Duration, steps []step) ([][]byte, error) {
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
	var out, errb bytes.Buffer
	err := g.m.Run(ctx, script.String(), nil, &out, &errb)
	outs, perr := splitBatch(out.Bytes(), mark, len(steps))
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
