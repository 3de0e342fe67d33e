package guest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// E4defragConfig configures the e4defrag tool worker. Only Layout.Dir,
// Files and Seed are used.
type E4defragConfig struct {
	Layout
	ID       int
	Duration time.Duration
	// Timeout bounds one invocation; 0 = DefaultE4defragTimeout.
	Timeout time.Duration
	// Tool is the e4defrag binary; "" = FindE4defrag's search.
	Tool string
	// KeepLines is how many unrecognised output lines to keep (the last
	// ones); 0 = 20.
	KeepLines int
}

// DefaultE4defragTimeout bounds one e4defrag invocation.
const DefaultE4defragTimeout = 60 * time.Second

// E4defragReport is the JSON document printed by `pbguest e4defrag`.
//
// Results, Exit0NotOK and ExitNonzeroOK are the tool's claims, parsed from
// what it printed, not kernel results: e4defrag prints "[ OK ]" for a file
// it skipped because it already had no more extents than it thinks best
// (counted as "ok_unchanged" when it printed "extents: N -> N"), it prints
// strerror of an errno that later calls may have clobbered (the class
// "move_ext:no_errno" is a failed MOVE_EXT it reported as "Success"), and
// its exit status is 0 when at least one argument succeeded, 1 otherwise,
// without regard to what it printed. Count refusals with `pbguest defrag`,
// which reads the ioctl's own return value.
type E4defragReport struct {
	Tool        string `json:"tool"`         // always "e4defrag"
	ToolPath    string `json:"tool_path"`    // the binary that ran
	ToolVersion string `json:"tool_version"` // from its banner, e.g. "1.47.0"
	ID          int    `json:"id"`
	// Attempts is the number of invocations started, one work file each.
	Attempts int64 `json:"attempts"`
	// Results counts one outcome class per invocation (they sum to
	// attempts; a killed invocation counts what it printed before): "ok", "ok_unchanged", "<step>:<ERRNO>" such as
	// "move_ext:EOPNOTSUPP", "move_ext:EBUSY", "move_ext:no_errno",
	// "fallocate:ENOSPC", "open:ENOENT", an errno-less refusal such as
	// "no_space", "locked", "not_ext4", or "ng" (an "[ NG ]" with no
	// message we know), "usage", "no_outcome" (nothing recognisable, e.g.
	// killed before it printed a verdict).
	Results map[string]int `json:"results"`
	// ExitStatus counts invocations by how they ended: the exit code as a
	// decimal string, "timeout" (killed after --timeout), "cut_at_end"
	// (killed because --duration ran out), "cancelled" (pbguest was
	// told to stop), "signal:<NAME>", "exec_error".
	ExitStatus map[string]int `json:"exit_status"`
	// Exit0NotOK counts invocations that exited with status 0 although
	// their printed outcome was not ok/ok_unchanged; ExitNonzeroOK those
	// that exited non-zero after printing ok. Killed ones are not counted.
	Exit0NotOK    int64 `json:"exit0_not_ok"`
	ExitNonzeroOK int64 `json:"exit_nonzero_ok"`
	// Unrecognised holds the last keep_lines output lines no rule matched.
	Unrecognised      []string `json:"unrecognised"`
	UnrecognisedTotal int      `json:"unrecognised_total"`
	Errors            []string `json:"errors"`
	ElapsedS          float64  `json:"elapsed_s"`
	// ToolS is the wall time spent inside invocations.
	ToolS           float64 `json:"tool_s"`
	InvocationsPerS float64 `json:"invocations_per_s"`
}

func (c *E4defragConfig) validate() error {
	switch {
	case c.Dir == "":
		return errors.New("--dir is required")
	case c.Files <= 0:
		return fmt.Errorf("--files must be > 0, got %d", c.Files)
	case c.Duration <= 0:
		return fmt.Errorf("--duration must be > 0, got %s", c.Duration)
	case c.Timeout < 0 || c.KeepLines < 0:
		return errors.New("--timeout and --keep-lines must be >= 0")
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultE4defragTimeout
	}
	if c.KeepLines == 0 {
		c.KeepLines = 20
	}
	return nil
}

// e4defragFallbacks are tried after PATH: minimal images often run
// without /usr/sbin in a non-login shell's PATH.
var e4defragFallbacks = []string{"/usr/sbin/e4defrag", "/sbin/e4defrag"}

// FindE4defrag returns path if it is given and executable, else e4defrag
// from PATH, else the first executable fallback.
func FindE4defrag(path string) (string, error) {
	if path != "" {
		if !isExecutable(path) {
			return "", fmt.Errorf("e4defrag %s is not an executable file", path)
		}
		return path, nil
	}
	if p, err := exec.LookPath("e4defrag"); err == nil {
		return p, nil
	}
	for _, p := range e4defragFallbacks {
		if isExecutable(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("e4defrag not found in PATH nor as %s (install e2fsprogs in the guest image)", strings.Join(e4defragFallbacks, " or "))
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0
}

// E4defrag runs `e4defrag -v FILE` on random work files, one invocation
// after the other, until the duration ends or ctx is cancelled; a running
// invocation is killed at either, or after cfg.Timeout. Not finding the
// tool is an error; everything the tool does is counted.
func E4defrag(ctx context.Context, cfg E4defragConfig) (E4defragReport, error) {
	if err := cfg.validate(); err != nil {
		return E4defragReport{}, err
	}
	tool, err := FindE4defrag(cfg.Tool)
	if err != nil {
		return E4defragReport{}, err
	}
	rep := E4defragReport{
		Tool:         "e4defrag",
		ToolPath:     tool,
		ID:           cfg.ID,
		Results:      map[string]int{"ok": 0, "ok_unchanged": 0, "move_ext:EOPNOTSUPP": 0, "move_ext:EBUSY": 0, "no_outcome": 0},
		ExitStatus:   map[string]int{},
		Unrecognised: []string{},
	}
	var errs errList
	rng := NewRNG(DeriveSeed(cfg.Seed, roleE4defrag, uint64(cfg.ID)))
	start := time.Now()
	end := start.Add(cfg.Duration)
	for time.Now().Before(end) && ctx.Err() == nil {
		path := cfg.Path(rng.Intn(cfg.Files))
		inv := runE4defrag(ctx, tool, path, cfg.Timeout, end)
		rep.Attempts++
		rep.ToolS += inv.elapsed.Seconds()
		rep.ExitStatus[inv.status]++
		if inv.err != nil {
			errs.add("%s -v %s: %v", tool, path, inv.err)
		}
		out := ParseE4defrag(inv.stdout, inv.stderr)
		rep.Results[out.Class]++
		if out.Version != "" {
			rep.ToolVersion = out.Version
		}
		ok := out.Class == "ok" || out.Class == "ok_unchanged"
		_, numErr := strconv.Atoi(inv.status)
		switch {
		case numErr != nil:
			// Killed or never ran: its exit status says nothing.
		case inv.status == "0" && !ok:
			rep.Exit0NotOK++
		case inv.status != "0" && ok:
			rep.ExitNonzeroOK++
		}
		rep.UnrecognisedTotal += len(out.Unrecognised)
		rep.Unrecognised = append(rep.Unrecognised, out.Unrecognised...)
		if n := len(rep.Unrecognised) - cfg.KeepLines; n > 0 {
			rep.Unrecognised = append([]string(nil), rep.Unrecognised[n:]...)
		}
	}
	rep.ElapsedS = time.Since(start).Seconds()
	if rep.ElapsedS > 0 {
		rep.InvocationsPerS = float64(rep.Attempts) / rep.ElapsedS
	}
	rep.Errors = errs.strings()
	return rep, nil
}

// invocation is one finished e4defrag run.
type invocation struct {
	stdout, stderr string
	status         string // see E4defragReport.ExitStatus
	err            error  // only for exec_error and unexpected Wait errors
	elapsed        time.Duration
}

// runE4defrag runs one `tool -v path` in its own process group with the C
// locale (so strerror texts are English), killing the group when ctx is
// done, after timeout, or at end, whichever comes first.
func runE4defrag(ctx context.Context, tool, path string, timeout time.Duration, end time.Time) invocation {
	deadline, cut := time.Now().Add(timeout), false
	if end.Before(deadline) {
		deadline, cut = end, true
	}
	cctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	cmd := exec.CommandContext(cctx, tool, "-v", path)
	cmd.Env = append(os.Environ(), "LC_ALL=C", "LANG=C")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return unix.Kill(-cmd.Process.Pid, unix.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr cappedBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	t0 := time.Now()
	err := cmd.Run()
	inv := invocation{elapsed: time.Since(t0), stdout: stdout.String(), stderr: stderr.String()}
	killedBy := func() string {
		switch {
		case ctx.Err() != nil:
			return "cancelled"
		case cut:
			return "cut_at_end"
		}
		return "timeout"
	}
	if cmd.ProcessState == nil {
		// Never started (or ctx was done before it could).
		inv.status, inv.err = "exec_error", err
		if cctx.Err() != nil {
			inv.status, inv.err = killedBy(), nil
		}
		return inv
	}
	ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
	switch {
	case ws.Signaled() && ws.Signal() == syscall.SIGKILL && cctx.Err() != nil:
		inv.status = killedBy()
	case ws.Signaled():
		inv.status = "signal:" + unix.SignalName(ws.Signal())
	default:
		inv.status = strconv.Itoa(ws.ExitStatus())
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) && cctx.Err() == nil {
		// e.g. exec.ErrWaitDelay: it exited but something kept its
		// output open.
		inv.err = err
	}
	return inv
}

// cappedBuffer keeps the first 256 KiB written to it; a tool gone
// haywire cannot exhaust the guest's memory.
type cappedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

const maxToolOutput = 256 << 10

func (c *cappedBuffer) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if room := maxToolOutput - c.buf.Len(); room > 0 {
		c.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (c *cappedBuffer) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

// E4defragOutcome is what one `e4defrag -v FILE` printed.
type E4defragOutcome struct {
	Class        string   // see E4defragReport.Results
	Version      string   // from the banner, "" if absent
	Unrecognised []string // lines no rule matched
}

// e4defragSteps names the messages e4defrag prints with an errno
// ("msg:strerror\t[ NG ]" or perror's "msg: strerror"), from e2fsprogs
// misc/e4defrag.c.
var e4defragSteps = map[string]string{
	"Failed to defrag with EXT4_IOC_MOVE_EXT ioctl": "move_ext",
	"Failed to open":                          "open",
	"Failed to get file extents":              "fiemap",
	"Failed to get file information":          "stat",
	"Failed to sync(fsync)":                   "fsync",
	"Failed to unlink":                        "unlink",
	"Failed to fallocate":                     "fallocate",
	"Failed to get file map":                  "mincore",
	"Failed to free page":                     "fadvise",
	"Failed to fadvise":                       "fadvise",
	"File is being defraged by other program": "donor_exists",
	"Failed to get filesystem information":    "statfs",
	"Failed to get lock information":          "getlk",
	"Couldn't get full path":                  "realpath",
	"Couldn't access /etc/mtab":               "mtab",
}

// e4defragRefusals names the messages it prints without an errno.
var e4defragRefusals = map[string]string{
	"Defrag size is larger than filesystem's free space":          "no_space",
	"File has been locked":                                        "locked",
	"File is not current user's file or current user is not root": "not_owner",
	"File size is 0":                    "empty",
	"File has no blocks":                "no_blocks",
	"File is not regular file":          "not_regular",
	`Can not process "lost+found"`:      "lost_found",
	"Filesystem is not ext4 filesystem": "not_ext4",
	"Filesystem is not mounted":         "not_mounted",
}

var (
	ansiEscape   = regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]`)
	e4Banner     = regexp.MustCompile(`^e4defrag (\S+) \(`)
	e4Counter    = regexp.MustCompile(`^(\[\d+/\d+\])+`)
	e4Extents    = regexp.MustCompile(`extents: (\d+) -> (\d+)`)
	e4Progress   = regexp.MustCompile(`^(.*:\s+\d+%(\s+extents: \d+ -> \d+)?|".*"\s+extents: \d+ -> \d+)$`)
	e4Summary    = regexp.MustCompile(`^(Success|Failure):\s*\[\s*\d+/\d+\s*\]$|^Total extents:|^Fragmented percentage:`)
	e4FileName   = regexp.MustCompile(`^".*"$`)
	e4Ignorable  = regexp.MustCompile(`^(ext4 defragmentation for |At least 2\.6\.31-rc1 |Warning: couldn't get file system details for )`)
	e4UsageLines = regexp.MustCompile(`^(Usage\s*: e4defrag|: e4defrag\s)`)
)

// ParseE4defrag classifies the output of one `e4defrag -v FILE` (stdout
// and stderr as captured separately). The first failure message wins over
// "[ OK ]"; see E4defragReport for what the classes can and cannot mean.
func ParseE4defrag(stdout, stderr string) E4defragOutcome {
	var out E4defragOutcome
	var fail, ok string
	usage := false
	for _, text := range []string{stdout, stderr} {
		// The progress display redraws with cursor escapes; treat each
		// redraw as a line of its own.
		text = ansiEscape.ReplaceAllString(text, "\n")
		for _, raw := range strings.FieldsFunc(text, func(r rune) bool { return r == '\n' || r == '\r' }) {
			line := strings.TrimSpace(raw)
			if line == "" {
				continue
			}
			if m := e4Banner.FindStringSubmatch(line); m != nil {
				out.Version = m[1]
				continue
			}
			if e4Ignorable.MatchString(line) || e4Summary.MatchString(line) || e4FileName.MatchString(line) {
				continue
			}
			if e4UsageLines.MatchString(line) {
				usage = true
				continue
			}
			line = strings.TrimSpace(e4Counter.ReplaceAllString(line, ""))
			switch {
			case line == "":
			case strings.HasSuffix(line, "[ OK ]"):
				if ok == "" {
					ok = "ok"
					if m := e4Extents.FindStringSubmatch(line); m != nil && m[1] == m[2] {
						ok = "ok_unchanged"
					}
				}
			case strings.HasSuffix(line, "[ NG ]"):
				c, known := e4Failure(strings.TrimSpace(strings.TrimSuffix(line, "[ NG ]")))
				if fail == "" {
					fail = c
				}
				if !known {
					out.Unrecognised = append(out.Unrecognised, raw)
				}
			case e4Progress.MatchString(line):
			default:
				c, known := e4Failure(line)
				if !known {
					out.Unrecognised = append(out.Unrecognised, raw)
				} else if fail == "" {
					fail = c
				}
			}
		}
	}
	switch {
	case fail != "":
		out.Class = fail
	case ok != "":
		out.Class = ok
	case usage:
		out.Class = "usage"
	default:
		out.Class = "no_outcome"
	}
	return out
}

// e4Failure classifies a failure message (without "[ NG ]"), which may
// still carry the progress prefix "FILE:  0%". known is false when
// nothing but "ng" could be said.
func e4Failure(msg string) (class string, known bool) {
	if i := strings.Index(msg, "%"); i >= 0 && e4Progress.MatchString(strings.TrimSpace(msg[:i+1])) {
		msg = strings.TrimSpace(msg[i+1:])
	}
	if msg == "" {
		return "ng", true
	}
	if c, ok := e4defragRefusals[msg]; ok {
		return c, true
	}
	// "msg:strerror" (no space) or perror's "msg: strerror"; strerror
	// texts hold no colon, so split at the last one.
	if i := strings.LastIndex(msg, ":"); i > 0 {
		if step, ok := e4defragSteps[strings.TrimSpace(msg[:i])]; ok {
			return step + ":" + errnoFromText(strings.TrimSpace(msg[i+1:])), true
		}
	}
	return "ng", false
}

var (
	strerrorOnce sync.Once
	strerrorMap  map[string]string
)

// errnoFromText maps a glibc strerror text to its errno name (Go's error
// strings are glibc's, lower-cased). "Success" means the tool printed
// errno 0 for a failure: "no_errno".
func errnoFromText(s string) string {
	strerrorOnce.Do(func() {
		strerrorMap = map[string]string{}
		for e := syscall.Errno(1); e < 200; e++ {
			if name := ErrnoName(e); !strings.HasPrefix(name, "errno") {
				if _, dup := strerrorMap[strings.ToLower(e.Error())]; !dup {
					strerrorMap[strings.ToLower(e.Error())] = name
				}
			}
		}
	})
	if strings.EqualFold(s, "Success") {
		return "no_errno"
	}
	if n, ok := strerrorMap[strings.ToLower(s)]; ok {
		return n
	}
	return "unknown_errno"
}
