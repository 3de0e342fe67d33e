package harness

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// BufferedIomapEvents fire only on iomap's buffered I/O path: reads,
// readahead, writeback and folio release/invalidation. Direct I/O, FIEMAP and
// SEEK_DATA go through iomap too but fire other events, so stock ext4, whose
// buffered I/O uses buffer heads, fires none of these on its files.
var BufferedIomapEvents = []string{
	"iomap_readpage", "iomap_readahead", "iomap_writepage", "iomap_writepage_map",
	"iomap_release_folio", "iomap_invalidate_folio",
}

// IomapActivity is what the iomap tracepoints saw on the scratch file
// system: evidence that the case's mount option really put the work files on
// the iomap buffered I/O path, not only that mount accepted it.
type IomapActivity struct {
	Dev     string   `json:"dev"`     // major:minor of the scratch file system
	Enabled []string `json:"enabled"` // events this kernel has and we counted
	Missing []string `json:"missing,omitempty"`
	// Events recorded by the ring buffer (kept + overwritten), exact.
	Setup    int64 `json:"setup_events"`    // mkfs+mount to the end of prepare (files written and fsynced)
	Workload int64 `json:"workload_events"` // during the workload phase
	// A breakdown by event of what the buffer still held at the end: a
	// lower bound per event once the buffer wrapped.
	InBuffer map[string]int64 `json:"in_buffer,omitempty"`
}

// iomapTracer counts tracepoint events for one file system through tracefs,
// with a ring-buffer filter on its device so the root file system and other
// disks do not count.
type iomapTracer struct {
	events []string
	mount  string
}

const tracefs = "/sys/kernel/tracing"

// startScript enables the events, filtered on the device of the mount, and
// prints "dev MAJ:MIN", one "event NAME" or "missing NAME" line per event.
// It does not use set -e: a kernel without tracing prints "notracefs".
func (t iomapTracer) startScript() string {
	var b strings.Builder
	fmt.Fprintf(&b, "T=%s\n", tracefs)
	fmt.Fprintf(&b, "[ -e $T/events ] || mount -t tracefs nodev $T 2>/dev/null\n")
	fmt.Fprintf(&b, "[ -e $T/events ] || { echo notracefs; exit 0; }\n")
	fmt.Fprintf(&b, "mm=$(mountpoint -d %s) || exit 1\n", t.mount)
	// The kernel's dev_t is MAJOR<<20 | MINOR, what the events' dev field holds.
	b.WriteString("kdev=$(( (${mm%:*} << 20) | ${mm#*:} ))\n")
	b.WriteString("echo 0 > $T/tracing_on; echo > $T/trace; echo 4096 > $T/buffer_size_kb\n")
	fmt.Fprintf(&b, "for e in %s; do\n", strings.Join(t.events, " "))
	b.WriteString("  d=$T/events/iomap/$e\n")
	b.WriteString("  if [ -d $d ]; then echo \"dev == $kdev\" > $d/filter && echo 1 > $d/enable && echo event $e; else echo missing $e; fi\n")
	b.WriteString("done\n")
	b.WriteString("echo 1 > $T/tracing_on\necho dev $mm\n")
	return b.String()
}

// totalScript prints the ring buffer's event count: per CPU, the events it
// holds plus those it overwrote or dropped.
func (t iomapTracer) totalScript() string {
	return fmt.Sprintf(`cat %s/per_cpu/cpu*/stats | awk '/^(entries|overrun|dropped events):/ {n += $NF} END {print "total", n+0}'`, tracefs)
}

// stopScript disables the events, prints the total, then a count per event
// name of what the buffer holds, and frees the buffer.
func (t iomapTracer) stopScript() string {
	return fmt.Sprintf(`T=%s; echo 0 > $T/tracing_on; for e in %s; do [ -d $T/events/iomap/$e ] && echo 0 > $T/events/iomap/$e/enable; done; %s
grep -o ' iomap_[a-z_]*:' $T/trace | sort | uniq -c | awk '{sub(":", "", $2); print "buffer", $2, $1}'
echo > $T/trace; echo 1 > $T/buffer_size_kb`, tracefs, strings.Join(t.events, " "), t.totalScript())
}

// parseTraceStart reads startScript's output into a.
func parseTraceStart(out []byte, a *IomapActivity) error {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 1 && f[0] == "notracefs":
			return fmt.Errorf("this kernel has no tracefs (needs CONFIG_FTRACE and an event tracer, e.g. CONFIG_ENABLE_DEFAULT_TRACERS)")
		case len(f) == 2 && f[0] == "dev":
			a.Dev = f[1]
		case len(f) == 2 && f[0] == "event":
			a.Enabled = append(a.Enabled, f[1])
		case len(f) == 2 && f[0] == "missing":
			a.Missing = append(a.Missing, f[1])
		}
	}
	if a.Dev == "" {
		return fmt.Errorf("trace setup printed no device: %q", lastLine(string(out)))
	}
	if len(a.Enabled) == 0 {
		return fmt.Errorf("this kernel has none of the iomap trace events %s (is CONFIG_FS_IOMAP built in?)", strings.Join(a.Missing, ", "))
	}
	return nil
}

// parseTraceCounts reads totalScript's or stopScript's output: the total
// and, from stopScript, the per-event buffer counts.
func parseTraceCounts(out []byte) (int64, map[string]int64, error) {
	total := int64(-1)
	var buf map[string]int64
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 2 && f[0] == "total":
			n, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil || n < 0 {
				return 0, nil, fmt.Errorf("trace total %q: not a count", f[1])
			}
			total = n
		case len(f) == 3 && f[0] == "buffer":
			n, err := strconv.ParseInt(f[2], 10, 64)
			if err != nil || n < 0 {
				return 0, nil, fmt.Errorf("trace buffer count %q for %s: not a count", f[2], f[1])
			}
			if buf == nil {
				buf = map[string]int64{}
			}
			buf[f[1]] = n
		}
	}
	if total < 0 {
		return 0, nil, fmt.Errorf("no trace total in %q", lastLine(string(out)))
	}
	return total, buf, nil
}

// notInUse is the setup reason when no buffered-iomap event fired on the
// scratch file system while prepare wrote and fsynced every work file.
func (a *IomapActivity) notInUse(mountOptions string) string {
	if a.Setup > 0 {
		return ""
	}
	return fmt.Sprintf("buffered iomap not in use: 0 events of %s on dev %s while the work files were written and fsynced (mount -o %s was accepted, but the files use buffer heads)",
		strings.Join(a.Enabled, ", "), a.Dev, mountOptions)
}

// Summary is one line for logs and reports.
func (a *IomapActivity) Summary() string {
	if a == nil {
		return ""
	}
	s := fmt.Sprintf("buffered iomap events on %s: %d in setup, %d in workload", a.Dev, a.Setup, a.Workload)
	if len(a.InBuffer) > 0 {
		names := make([]string, 0, len(a.InBuffer))
		for n := range a.InBuffer {
			names = append(names, n)
		}
		sort.Strings(names)
		var parts []string
		for _, n := range names {
			parts = append(parts, fmt.Sprintf("%s %d", n, a.InBuffer[n]))
		}
		s += " (last in buffer: " + strings.Join(parts, ", ") + ")"
	}
	return s
}

// startIomapTrace enables the tracer; the returned reason is non-empty when
// the kernel cannot show iomap activity at all.
func (r *Runner) startIomapTrace(ctx context.Context, g *guest, rec *RunRecord, t iomapTracer) (string, error) {
	out, err := g.sh(ctx, time.Minute, "iomap-trace-start.txt", t.startScript())
	if err != nil {
		return "", err
	}
	rec.BufferedIomap = &IomapActivity{}
	if err := parseTraceStart(out, rec.BufferedIomap); err != nil {
		return "cannot check buffered iomap: " + err.Error(), nil
	}
	return "", nil
}

// iomapTotal reads the tracer's running total.
func (r *Runner) iomapTotal(ctx context.Context, g *guest, t iomapTracer) (int64, error) {
	out, err := g.sh(ctx, time.Minute, "", t.totalScript())
	if err != nil {
		return 0, err
	}
	n, _, err := parseTraceCounts(out)
	return n, err
}

// stopIomapTrace records the workload's events and frees the buffer.
func (r *Runner) stopIomapTrace(ctx context.Context, g *guest, rec *RunRecord, t iomapTracer) error {
	out, err := g.sh(ctx, 2*time.Minute, "iomap-trace.txt", t.stopScript())
	if err != nil {
		return err
	}
	total, buf, err := parseTraceCounts(out)
	if err != nil {
		return fmt.Errorf("iomap trace: %w", err)
	}
	a := rec.BufferedIomap
	a.Workload = max(total-a.Setup, 0)
	a.InBuffer = buf
	return nil
}
