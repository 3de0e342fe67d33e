package harness

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"patchbay/record"
)

// BufferedIomapEvents fire only on iomap's buffered I/O path: reads,
// readahead, writeback and folio release/invalidation. Direct I/O, FIEMAP and
// SEEK_DATA go through iomap too but fire other events, so stock ext4, whose
// buffered I/O uses buffer heads, fires none of these on its files.
var BufferedIomapEvents = []string{
	"iomap_readpage", "iomap_readahead", "iomap_writepage", "iomap_writepage_map",
	"iomap_release_folio", "iomap_invalidate_folio",
}

// eventCounter counts tracepoint events for one file system in a tracefs
// instance of its own (its own ring buffer, so exact totals per counter and
// the global buffer untouched), with a filter on the device's dev_t.
type eventCounter struct {
	instance string   // tracefs instance name
	group    string   // events/<group>/
	events   []string // events of the group to enable
	filter   string   // event filter; $kdev is the device's kernel dev_t
	mount    string   // mount point of the file system
}

const tracefs = "/sys/kernel/tracing"

// iomapCounter counts the given iomap events on the file system at mount.
func iomapCounter(mount string, events []string) eventCounter {
	return eventCounter{instance: "patchbay_iomap", group: "iomap", events: events, filter: "dev == $kdev", mount: mount}
}

// folioCounters count the page-cache folios added on the file system: all
// of them, and those above order 0. A series that enables large folios
// shows the second, or the run tested only order 0.
func folioCounters(mount string) (all, large eventCounter) {
	all = eventCounter{instance: "patchbay_folios", group: "filemap", events: []string{"mm_filemap_add_to_page_cache"},
		filter: "s_dev == $kdev", mount: mount}
	large = all
	large.instance, large.filter = "patchbay_large_folios", "s_dev == $kdev && order > 0"
	return all, large
}

func (t eventCounter) dir() string { return tracefs + "/instances/" + t.instance }

// startScript creates the instance and enables the events, filtered, and
// prints "dev MAJ:MIN" and one "event NAME" or "missing NAME" line per
// event. It does not use set -e: a kernel without tracing prints
// "notracefs".
func (t eventCounter) startScript() string {
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

// totalScript prints the instance's event count: per CPU, the events its
// buffer holds plus those it overwrote or dropped.
func (t eventCounter) totalScript() string {
	return fmt.Sprintf(`cat %s/per_cpu/cpu*/stats | awk '/^(entries|overrun|dropped events):/ {n += $NF} END {print "total", n+0}'`, t.dir())
}

// stopScript stops the instance, prints the total, then counts per event
// name and per folio order what the buffer holds, and removes the instance.
func (t eventCounter) stopScript() string {
	return fmt.Sprintf(`I=%s; echo 0 > $I/tracing_on; %s
grep -o ' [a-z_]*: ' $I/trace | sort | uniq -c | awk '{sub(":", "", $2); print "buffer", $2, $1}'
grep -o ' order=[0-9]*' $I/trace | sort | uniq -c | awk '{sub("order=", "", $2); print "order", $2, $1}'
echo 0 > $I/events/enable; rmdir $I`, t.dir(), t.totalScript())
}

// parseTraceStart reads startScript's output into a.
func parseTraceStart(out []byte, a *record.IomapActivity) error {
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
		return fmt.Errorf("this kernel has none of the trace events %s", strings.Join(a.Missing, ", "))
	}
	return nil
}

// traceCounts is what totalScript or stopScript printed.
type traceCounts struct {
	Total   int64
	ByEvent map[string]int64 // in the buffer at the end (stopScript)
	ByOrder map[string]int64 // folio order= fields in the buffer (stopScript)
}

// parseTraceCounts reads totalScript's or stopScript's output.
func parseTraceCounts(out []byte) (traceCounts, error) {
	c := traceCounts{Total: -1}
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
		return c, fmt.Errorf("no trace total in %q", lastLine(string(out)))
	}
	return c, nil
}

// notInUse is the setup reason when no buffered-iomap event fired on the
// scratch file system while prepare wrote and fsynced every work file.
func notInUse(a *record.IomapActivity, mountOptions string) string {
	if a.Setup > 0 {
		return ""
	}
	return fmt.Sprintf("buffered iomap not in use: 0 events of %s on dev %s while the work files were written and fsynced (mount -o %s was accepted, but the files use buffer heads)",
		strings.Join(a.Enabled, ", "), a.Dev, mountOptions)
}

// iomapTrace is the buffered-iomap check of one run: an iomap event counter
// and the two folio counters, started right after mount.
type iomapTrace struct {
	iomap, folios, large eventCounter
}

func newIomapTrace() iomapTrace {
	all, large := folioCounters(mountPoint)
	return iomapTrace{iomap: iomapCounter(mountPoint, BufferedIomapEvents), folios: all, large: large}
}

// start enables every counter; the returned reason is non-empty when the
// kernel cannot show iomap activity at all.
func (t iomapTrace) start(ctx context.Context, g *guest, rec *record.RunRecord) (string, error) {
	out, err := g.sh(ctx, time.Minute, "iomap-trace-start.txt", t.iomap.startScript())
	if err != nil {
		return "", err
	}
	rec.BufferedIomap = &record.IomapActivity{}
	if err := parseTraceStart(out, rec.BufferedIomap); err != nil {
		return "cannot check buffered iomap: " + err.Error(), nil
	}
	// The folio counts are information: a kernel without the event leaves
	// them at zero.
	for _, c := range []eventCounter{t.folios, t.large} {
		if _, err := g.sh(ctx, time.Minute, "", c.startScript()); err != nil {
			return "", err
		}
	}
	return "", nil
}

// setupDone records the iomap events of setup and returns the setup reason
// when there were none, or (requireLarge) when no folio above order 0 was
// added.
func (t iomapTrace) setupDone(ctx context.Context, g *guest, rec *record.RunRecord, mountOptions string, requireLarge bool) (string, error) {
	out, err := g.sh(ctx, time.Minute, "", t.iomap.totalScript())
	if err != nil {
		return "", err
	}
	c, err := parseTraceCounts(out)
	if err != nil {
		return "", fmt.Errorf("iomap trace: %w", err)
	}
	rec.BufferedIomap.Setup = c.Total
	if reason := notInUse(rec.BufferedIomap, mountOptions); reason != "" || !requireLarge {
		return reason, nil
	}
	var all, large int64
	for _, ctr := range []eventCounter{t.folios, t.large} {
		out, err := g.sh(ctx, time.Minute, "", ctr.totalScript())
		if err != nil {
			return "", err
		}
		n, err := parseTraceCounts(out)
		if err != nil {
			return "", fmt.Errorf("trace %s: %w", ctr.instance, err)
		}
		if ctr.instance == t.large.instance {
			large = n.Total
		} else {
			all = n.Total
		}
	}
	return largeFoliosNotInUse(rec.BufferedIomap.Dev, all, large), nil
}

// largeFoliosNotInUse is the setup reason when the work files were written
// on order-0 folios only (e.g. a kernel without CONFIG_TRANSPARENT_HUGEPAGE).
func largeFoliosNotInUse(dev string, all, large int64) string {
	if large > 0 {
		return ""
	}
	return fmt.Sprintf("large folios not in use: %d page-cache folios added on dev %s while the work files were written and fsynced, none above order 0 (filesystem.require_large_folios; 6.12 needs CONFIG_TRANSPARENT_HUGEPAGE)", all, dev)
}

// stop records the workload's iomap events and the folios, and removes the
// instances.
func (t iomapTrace) stop(ctx context.Context, g *guest, rec *record.RunRecord) error {
	a := rec.BufferedIomap
	for _, c := range []eventCounter{t.iomap, t.folios, t.large} {
		out, err := g.sh(ctx, 2*time.Minute, "trace-"+c.instance+".txt", c.stopScript())
		if err != nil {
			return err
		}
		n, err := parseTraceCounts(out)
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
