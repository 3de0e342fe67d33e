// Package iomapcheck is the buffered-iomap and large-folio check of a run
// (filesystem.check_buffered_iomap, require_large_folios): tracefs event
// counters on the scratch file system, started after mount, read at the end
// of setup and after the workload, and the setup reasons that fail a run
// whose files never took the iomap buffered path or large folios.
package iomapcheck

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"patchbay/record"
	"patchbay/workload/guestcmd"
)

// Shell runs a command in the guest within timeout; a non-empty save names
// the file in the run directory that gets its output.
type Shell interface {
	Sh(ctx context.Context, timeout time.Duration, save, cmd string) ([]byte, error)
}

// BufferedIomapEvents fire only on iomap's buffered I/O path: reads,
// readahead, writeback and folio release/invalidation. Direct I/O, FIEMAP and
// SEEK_DATA go through iomap too but fire other events, so stock ext4, whose
// buffered I/O uses buffer heads, fires none of these on its files.
var BufferedIomapEvents = []string{
	"iomap_readpage", "iomap_readahead", "iomap_writepage", "iomap_writepage_map",
	"iomap_release_folio", "iomap_invalidate_folio",
}

// Counter counts tracepoint events for one file system in a tracefs
// instance of its own (its own ring buffer, so exact totals per counter and
// the global buffer untouched), with a filter on the device's dev_t.
type Counter struct {
	instance string   // tracefs instance name
	group    string   // events/<group>/
	events   []string // events of the group to enable
	filter   string   // event filter; $kdev is the device's kernel dev_t
	mount    string   // mount point of the file system
}

const tracefs = "/sys/kernel/tracing"

// IomapCounter counts the given iomap events on the file system at mount.
func IomapCounter(mount string, events []string) Counter {
	return Counter{instance: "patchbay_iomap", group: "iomap", events: events, filter: "dev == $kdev", mount: mount}
}

// FolioCounters count the page-cache folios added on the file system: all
// of them, and those above order 0. A series that enables large folios
// shows the second, or the run tested only order 0.
func FolioCounters(mount string) (all, large Counter) {
	all = Counter{instance: "patchbay_folios", group: "filemap", events: []string{"mm_filemap_add_to_page_cache"},
		filter: "s_dev == $kdev", mount: mount}
	large = all
	large.instance, large.filter = "patchbay_large_folios", "s_dev == $kdev && order > 0"
	return all, large
}

func (t Counter) dir() string { return tracefs + "/instances/" + t.instance }

// StartScript creates the instance and enables the events, filtered, and
// prints "dev MAJ:MIN" and one "event NAME" or "missing NAME" line per
// event. It does not use set -e: a kernel without tracing prints
// "notracefs".
func (t Counter) StartScript() string {
	return fmt.Sprintf(`[ -e %[1]s/instances ] || mount -t tracefs nodev %[1]s 2>/dev/null
[ -e %[1]s/instances ] || { echo notracefs; exit 0; }
mm=$(mountpoint -d %[2]s) || exit 1
# The kernel's dev_t is MAJOR<<20 | MINOR, what the events' fields hold.
kdev=$(( (${mm%%:*} << 20) | ${mm#*:} ))
I=%[3]s; [ -d $I ] || mkdir $I || exit 1
echo 0 > $I/tracing_on; echo > $I/trace; echo 4096 > $I/buffer_size_kb
for e in %[4]s; do
  d=$I/events/%[5]s/$e
  if [ -d $d ]; then echo "%[6]s" > $d/filter && echo 1 > $d/enable && echo event $e; else echo missing $e; fi
done
echo 1 > $I/tracing_on
echo dev $mm
`, tracefs, t.mount, t.dir(), strings.Join(t.events, " "), t.group, t.filter)
}

// TotalScript prints the instance's event count: per CPU, the events its
// buffer holds plus those it overwrote or dropped.
func (t Counter) TotalScript() string {
	return fmt.Sprintf(`cat %s/per_cpu/cpu*/stats | awk '/^(entries|overrun|dropped events):/ {n += $NF} END {print "total", n+0}'`, t.dir())
}

// StopScript stops the instance, prints the total, then counts per event
// name and per folio order what the buffer holds, and removes the instance.
func (t Counter) StopScript() string {
	return fmt.Sprintf(`I=%s; echo 0 > $I/tracing_on; %s
grep -o ' [a-z_]*: ' $I/trace | sort | uniq -c | awk '{sub(":", "", $2); print "buffer", $2, $1}'
grep -o ' order=[0-9]*' $I/trace | sort | uniq -c | awk '{sub("order=", "", $2); print "order", $2, $1}'
echo 0 > $I/events/enable; rmdir $I`, t.dir(), t.TotalScript())
}

// ParseStart reads StartScript's output into a.
func ParseStart(out []byte, a *record.IomapActivity) error {
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
		return fmt.Errorf("trace setup printed no device: %q", guestcmd.LastLine(string(out)))
	}
	if len(a.Enabled) == 0 {
		return fmt.Errorf("this kernel has none of the trace events %s", strings.Join(a.Missing, ", "))
	}
	return nil
}

// Counts is what TotalScript or StopScript printed.
type Counts struct {
	Total   int64
	ByEvent map[string]int64 // in the buffer at the end (StopScript)
	ByOrder map[string]int64 // folio order= fields in the buffer (StopScript)
}

// ParseCounts reads TotalScript's or StopScript's output.
func ParseCounts(out []byte) (Counts, error) {
	c := Counts{Total: -1}
	count := func(s string) (int64, error) {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("trace count %q: not a count", s)
		}
		return n, nil
	}
	put := func(m *map[string]int64, key string, n int64) {
		if *m == nil {
			*m = map[string]int64{}
		}
		(*m)[key] = n
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || (f[0] != "total" && len(f) != 3) {
			continue
		}
		n, err := count(f[len(f)-1])
		if err != nil {
			return c, fmt.Errorf("%s: %w", sc.Text(), err)
		}
		switch {
		case len(f) == 2 && f[0] == "total":
			c.Total = n
		case f[0] == "buffer":
			put(&c.ByEvent, f[1], n)
		case f[0] == "order":
			put(&c.ByOrder, f[1], n)
		}
	}
	if c.Total < 0 {
		return c, fmt.Errorf("no trace total in %q", guestcmd.LastLine(string(out)))
	}
	return c, nil
}

// NotInUse is the setup reason when no buffered-iomap event fired on the
// scratch file system while prepare wrote and fsynced every work file.
func NotInUse(a *record.IomapActivity, mountOptions string) string {
	if a.Setup > 0 {
		return ""
	}
	return fmt.Sprintf("buffered iomap not in use: 0 events of %s on dev %s while the work files were written and fsynced (mount -o %s was accepted, but the files use buffer heads)",
		strings.Join(a.Enabled, ", "), a.Dev, mountOptions)
}

// Trace is the buffered-iomap check of one run: an iomap event counter
// and the two folio counters, started right after mount.
type Trace struct {
	iomap, folios, large Counter
}

// New is the check of the file system mounted at mount.
func New(mount string) Trace {
	all, large := FolioCounters(mount)
	return Trace{iomap: IomapCounter(mount, BufferedIomapEvents), folios: all, large: large}
}

// Start enables every counter; the returned reason is non-empty when the
// kernel cannot show iomap activity at all.
func (t Trace) Start(ctx context.Context, g Shell, rec *record.RunRecord) (string, error) {
	out, err := g.Sh(ctx, time.Minute, "iomap-trace-start.txt", t.iomap.StartScript())
	if err != nil {
		return "", err
	}
	rec.BufferedIomap = &record.IomapActivity{}
	if err := ParseStart(out, rec.BufferedIomap); err != nil {
		return "cannot check buffered iomap: " + err.Error(), nil
	}
	// The folio counts are information: a kernel without the event leaves
	// them at zero.
	for _, c := range []Counter{t.folios, t.large} {
		if _, err := g.Sh(ctx, time.Minute, "", c.StartScript()); err != nil {
			return "", err
		}
	}
	return "", nil
}

// SetupDone records the iomap events of setup and returns the setup reason
// when there were none, or (requireLarge) when no folio above order 0 was
// added.
func (t Trace) SetupDone(ctx context.Context, g Shell, rec *record.RunRecord, mountOptions string, requireLarge bool) (string, error) {
	out, err := g.Sh(ctx, time.Minute, "", t.iomap.TotalScript())
	if err != nil {
		return "", err
	}
	c, err := ParseCounts(out)
	if err != nil {
		return "", fmt.Errorf("iomap trace: %w", err)
	}
	rec.BufferedIomap.Setup = c.Total
	if reason := NotInUse(rec.BufferedIomap, mountOptions); reason != "" || !requireLarge {
		return reason, nil
	}
	var all, large int64
	for _, ctr := range []Counter{t.folios, t.large} {
		out, err := g.Sh(ctx, time.Minute, "", ctr.TotalScript())
		if err != nil {
			return "", err
		}
		n, err := ParseCounts(out)
		if err != nil {
			return "", fmt.Errorf("trace %s: %w", ctr.instance, err)
		}
		if ctr.instance == t.large.instance {
			large = n.Total
		} else {
			all = n.Total
		}
	}
	return LargeFoliosNotInUse(rec.BufferedIomap.Dev, all, large), nil
}

// LargeFoliosNotInUse is the setup reason when the work files were written
// on order-0 folios only (e.g. a kernel without CONFIG_TRANSPARENT_HUGEPAGE).
func LargeFoliosNotInUse(dev string, all, large int64) string {
	if large > 0 {
		return ""
	}
	return fmt.Sprintf("large folios not in use: %d page-cache folios added on dev %s while the work files were written and fsynced, none above order 0 (filesystem.require_large_folios; 6.12 needs CONFIG_TRANSPARENT_HUGEPAGE)", all, dev)
}

// Stop records the workload's iomap events and the folios, and removes the
// instances.
func (t Trace) Stop(ctx context.Context, g Shell, rec *record.RunRecord) error {
	a := rec.BufferedIomap
	for _, c := range []Counter{t.iomap, t.folios, t.large} {
		out, err := g.Sh(ctx, 2*time.Minute, "trace-"+c.instance+".txt", c.StopScript())
		if err != nil {
			return err
		}
		n, err := ParseCounts(out)
		if err != nil {
			return fmt.Errorf("trace %s: %w", c.instance, err)
		}
		switch c.instance {
		case t.iomap.instance:
			a.Workload = max(n.Total-a.Setup, 0)
			a.InBuffer = n.ByEvent
		case t.folios.instance:
			a.Folios = n.Total
		case t.large.instance:
			a.LargeFolios, a.LargeFolioOrders = n.Total, n.ByOrder
		}
	}
	return nil
}
