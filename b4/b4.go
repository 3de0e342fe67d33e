// Package b4 fetches a patch series from lore by its message-id with
// "b4 am", for a case input given as b4:MSGID or lore:MSGID.
package b4

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// b4Timeout bounds one b4 am: a thread from lore is seconds, a dead network
// must not hang the run.
const b4Timeout = 3 * time.Minute

// msgidRe is what patchbay accepts as a message-id: local@domain without the
// angle brackets, no spaces, not starting with "-" (never an option to b4).
var msgidRe = regexp.MustCompile(`^[A-Za-z0-9._%+=#$!&*~^{}|/?'][A-Za-z0-9._%+=#$!&*~^{}|/?'-]*@[A-Za-z0-9][A-Za-z0-9.-]*$`)

// Input turns "b4:MSGID" or "lore:MSGID" into an mbox of the series
// fetched from lore with b4 am. ok is false when val is not of that form.
func Input(ctx context.Context, val string) (path string, ok bool, err error) {
	kind, msgid, found := strings.Cut(val, ":")
	if !found || (kind != "b4" && kind != "lore") {
		return "", false, nil
	}
	dir, err := os.MkdirTemp("", "patchbay-b4-")
	if err != nil {
		return "", true, fmt.Errorf("%s: %w", val, err)
	}
	// The mbox outlives this process on purpose: run.json names it, and
	// repro of a run reads it again.
	path, err = Am(ctx, "b4", strings.Trim(msgid, "<>"), "", dir)
	if err != nil {
		os.RemoveAll(dir)
		return "", true, fmt.Errorf("%s: %w", val, err)
	}
	return path, true, nil
}

// Am runs "b4 am" for msgid into dir and returns the mbox it wrote. With
// localMbox set, b4 reads the thread from that file instead of lore (b4 am
// -m), which is how the tests run it without a network.
func Am(ctx context.Context, b4, msgid, localMbox, dir string) (string, error) {
	if !msgidRe.MatchString(msgid) {
		return "", fmt.Errorf("%q is not a message-id (want local@domain, e.g. 20241022111059.2566137-1-yi.zhang@huaweicloud.com)", msgid)
	}
	bin, err := exec.LookPath(b4)
	if err != nil {
		return "", fmt.Errorf("b4 is not installed (Debian: apt-get install b4), or give the series as an mbox file: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, b4Timeout)
	defer cancel()
	args := []string{"am", "-C", "-o", dir, "-n", "series"}
	if localMbox != "" {
		args = append(args, "-m", localMbox)
	}
	args = append(args, "--", msgid)
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	out := &capped{max: 64 << 10}
	cmd.Stdout, cmd.Stderr = out, out
	err = cmd.Run()
	if ctx.Err() != nil {
		return "", fmt.Errorf("b4 am %s: no answer within %s (network?)", msgid, b4Timeout)
	}
	text := out.String()
	if err != nil {
		if strings.Contains(text, "ConnectionError") || strings.Contains(text, "ProxyError") || strings.Contains(text, "Max retries exceeded") {
			return "", fmt.Errorf("b4 am %s: cannot reach lore.kernel.org (no network?); fetch the thread elsewhere and give it as an mbox file", msgid)
		}
		return "", fmt.Errorf("b4 am %s: %w: %s", msgid, err, b4Said(text))
	}
	mbox := filepath.Join(dir, "series.mbx")
	if st, err := os.Stat(mbox); err != nil || st.Size() == 0 {
		return "", fmt.Errorf("b4 am %s wrote no patches: %s", msgid, b4Said(text))
	}
	return mbox, nil
}

// capped keeps the first max bytes written to it: b4's output is only read
// for an error message.
type capped struct {
	max int
	buf []byte
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.max - len(c.buf); room > 0 {
		c.buf = append(c.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (c *capped) String() string { return string(c.buf) }

// b4Said is b4's last line of output, or a note that it printed nothing.
func b4Said(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndex(s, "\n"); i >= 0 {
		s = s[i+1:]
	}
	if s != "" {
		return s
	}
	return "(no output)"
}
