package kernel

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"time"
)

// stepLog prints one line per build step with the variant and elapsed time.
type stepLog struct {
	w     io.Writer
	name  string
	start time.Time
}

func (l *stepLog) step(format string, args ...any) {
	if l.w == nil {
		return
	}
	fmt.Fprintf(l.w, "[kernel %s +%s] %s\n", l.name, time.Since(l.start).Round(time.Second), fmt.Sprintf(format, args...))
}

// run runs a command and returns its combined output in the error on failure.
func run(ctx context.Context, dir string, env []string, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, tail(out, 20))
	}
	return nil
}

// runLogged appends the command's output to logPath; on failure the error
// (a *logError) carries the log's last lines, which is where make says what
// broke, and the compiler's error lines if they scrolled out of them.
func runLogged(ctx context.Context, dir, logPath string, env []string, name string, args ...string) error {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	fmt.Fprintf(f, "\n$ %s %s\n", name, strings.Join(args, " "))
	var last bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = env
	w := io.MultiWriter(f, &tailBuffer{buf: &last, max: 64 << 10})
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w", name, ctx.Err())
		}
		return &logError{What: name, Err: err, Log: logPath, Output: last.String()}
	}
	return nil
}

// logError is a logged command that failed. Its message is made when
// printed, so the log can move (keepLog) after the failure.
type logError struct {
	What   string // the command, e.g. "make bzImage"
	Err    error
	Log    string // where the whole output is; "" when it could not be kept
	Output string // the output's last 64 KiB
}

var compilerError = regexp.MustCompile(`(?:: (?:fatal )?error: |undefined reference to |No space left on device)`)

func (e *logError) Error() string {
	const tailLines = 25
	lines := strings.Split(strings.TrimRight(e.Output, "\n"), "\n")
	cut := max(len(lines)-tailLines, 0)
	var early []string
	for _, l := range lines[:cut] {
		if compilerError.MatchString(l) && len(early) < 10 {
			early = append(early, l)
		}
	}
	var sb strings.Builder
	sb.WriteString(e.What + ": failed (" + e.Err.Error())
	if e.Log != "" {
		sb.WriteString("; full log: " + e.Log)
	}
	sb.WriteString("):\n")
	for _, l := range early {
		sb.WriteString("  | " + l + "\n")
	}
	if len(early) > 0 {
		sb.WriteString("  | ...\n")
	}
	sb.WriteString("  | " + strings.Join(lines[cut:], "\n  | "))
	return sb.String()
}

func (e *logError) Unwrap() error { return e.Err }

// NoSpaceError says the cache's filesystem is (or would be) full.
type NoSpaceError struct {
	Dir  string // the cache
	Free int64  // bytes available when noticed
	Need int64  // bytes the step needs; 0 when a write failed
	What string // the step
	Err  error  // the failure, when a write failed
}

func (e *NoSpaceError) Error() string {
	msg := fmt.Sprintf("out of disk space in the cache %s (%s free)", e.Dir, humanBytes(e.Free))
	if e.Need > 0 {
		msg = fmt.Sprintf("out of disk space in the cache %s: %s needs about %s, %s free", e.Dir, e.What, humanBytes(e.Need), humanBytes(e.Free))
	}
	msg += "; free some with `patchbay cache prune`, or point --cache / $PATCHBAY_CACHE at a larger disk"
	if e.Err != nil {
		msg += ". It failed with: " + noSpaceLine(e.Err.Error())
	}
	return msg
}

// Unwrap makes errors.Is(err, syscall.ENOSPC) true.
func (e *NoSpaceError) Unwrap() []error {
	if e.Err != nil {
		return []error{syscall.ENOSPC, e.Err}
	}
	return []error{syscall.ENOSPC}
}

func isNoSpace(err error) bool {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "No space left on device") || strings.Contains(msg, "Disk quota exceeded")
}

// noSpaceLine picks the line of msg that says the disk is full, prefixed by
// the first line (which names the step).
func noSpaceLine(msg string) string {
	lines := strings.Split(msg, "\n")
	first := strings.TrimSpace(lines[0])
	for _, l := range lines {
		if strings.Contains(l, "No space left on device") || strings.Contains(l, "Disk quota exceeded") {
			l = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(l), "|"))
			if l == first {
				return l
			}
			return strings.TrimSuffix(first, ":") + ": " + l
		}
	}
	return first
}

// explainSpace turns any disk-full failure into one NoSpaceError paragraph.
func (b *Builder) explainSpace(spec Spec, err error) error {
	var ne *NoSpaceError
	if errors.As(err, &ne) {
		return fmt.Errorf("variant %s: %w", spec.Name, ne)
	}
	if !isNoSpace(err) {
		return err
	}
	free, _ := freeBytes(b.CacheDir)
	return fmt.Errorf("variant %s: %w", spec.Name, &NoSpaceError{Dir: b.CacheDir, Free: free, Err: err})
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// tailBuffer keeps only roughly the last max bytes written to it.
type tailBuffer struct {
	buf *bytes.Buffer
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.buf.Write(p)
	if t.buf.Len() > 2*t.max {
		keep := append([]byte(nil), t.buf.Bytes()[t.buf.Len()-t.max:]...)
		t.buf.Reset()
		t.buf.Write(keep)
	}
	return len(p), nil
}

func tail(out []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  | " + strings.Join(lines, "\n  | ")
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func touch(path string) error {
	return os.WriteFile(path, nil, 0o644)
}
