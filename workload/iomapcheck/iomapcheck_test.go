package iomapcheck

import (
	"strings"
	"testing"

	"patchbay/record"
)

func TestParseTraceStart(t *testing.T) {
	var a record.IomapActivity
	out := "event iomap_readpage\nmissing iomap_writepage\nevent iomap_writepage_map\ndev 254:16\n"
	if err := ParseStart([]byte(out), &a); err != nil {
		t.Fatal(err)
	}
	if a.Dev != "254:16" || strings.Join(a.Enabled, ",") != "iomap_readpage,iomap_writepage_map" || strings.Join(a.Missing, ",") != "iomap_writepage" {
		t.Errorf("activity = %+v", a)
	}
	for out, want := range map[string]string{
		"notracefs\n": "no tracefs",
		"missing iomap_readpage\nmissing iomap_readahead\ndev 254:16\n": "none of the trace events",
		"event iomap_readpage\n": "no device",
	} {
		var a record.IomapActivity
		err := ParseStart([]byte(out), &a)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", out, err, want)
		}
	}
}

func TestParseTraceCounts(t *testing.T) {
	c, err := ParseCounts([]byte("total 1234\nbuffer iomap_writepage_map 1000\nbuffer iomap_readahead 3\norder 2 7\norder 4 1\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Total != 1234 || c.ByEvent["iomap_writepage_map"] != 1000 || c.ByEvent["iomap_readahead"] != 3 || len(c.ByEvent) != 2 {
		t.Errorf("counts %+v", c)
	}
	if c.ByOrder["2"] != 7 || c.ByOrder["4"] != 1 || len(c.ByOrder) != 2 {
		t.Errorf("orders %v", c.ByOrder)
	}
	if c, err := ParseCounts([]byte("total 0\n")); err != nil || c.Total != 0 || c.ByEvent != nil {
		t.Errorf("zero: %+v %v", c, err)
	}
	for _, bad := range []string{"", "total x\n", "total -1\n", "total 1\nbuffer iomap_readpage many\n", "total 1\norder 0 -3\n"} {
		if _, err := ParseCounts([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestIomapNotInUse(t *testing.T) {
	a := &record.IomapActivity{Dev: "254:16", Enabled: []string{"iomap_readpage", "iomap_writepage_map"}}
	r := NotInUse(a, "buffered_iomap")
	for _, want := range []string{"buffered iomap not in use", "0 events", "iomap_writepage_map", "254:16", "-o buffered_iomap"} {
		if !strings.Contains(r, want) {
			t.Errorf("reason %q does not contain %q", r, want)
		}
	}
	a.Setup = 1
	if r := NotInUse(a, "buffered_iomap"); r != "" {
		t.Errorf("with events: reason %q", r)
	}
}

// The scripts filter on the kernel's dev_t, in an instance of their own,
// and enable only the events given: a wrong encoding or event set would
// count the wrong disk or the wrong path.
func TestTraceScripts(t *testing.T) {
	c := IomapCounter("/mnt/scratch", []string{"iomap_readpage", "iomap_writepage_map"})
	s := c.StartScript()
	for _, want := range []string{"mountpoint -d /mnt/scratch", "<< 20", `echo "dev == $kdev" > $d/filter`,
		"for e in iomap_readpage iomap_writepage_map;", "I=/sys/kernel/tracing/instances/patchbay_iomap;", "$I/events/iomap/$e", "${mm%:*}"} {
		if !strings.Contains(s, want) {
			t.Errorf("start script lacks %q:\n%s", want, s)
		}
	}
	if !strings.Contains(c.StopScript(), "rmdir $I") {
		t.Errorf("stop script does not remove the instance")
	}
	all, large := FolioCounters("/mnt/scratch")
	if all.instance == large.instance || !strings.Contains(large.StartScript(), "s_dev == $kdev && order > 0") {
		t.Errorf("folio counters %+v %+v", all, large)
	}
	for _, e := range BufferedIomapEvents {
		if strings.Contains(e, "dio") || e == "iomap_iter" {
			t.Errorf("%s also fires for direct I/O or FIEMAP: not evidence of buffered iomap", e)
		}
	}
}

func TestLargeFoliosNotInUse(t *testing.T) {
	if r := LargeFoliosNotInUse("254:32", 300, 0); !strings.Contains(r, "large folios not in use: 300 page-cache folios added on dev 254:32") || !strings.Contains(r, "CONFIG_TRANSPARENT_HUGEPAGE") {
		t.Errorf("no large folios: %q", r)
	}
	if r := LargeFoliosNotInUse("254:32", 300, 5); r != "" {
		t.Errorf("with large folios: %q", r)
	}
}

// FuzzTraceOutput: the tracefs scripts' output comes from a guest that may
// be broken; accepted counts are never negative.
func FuzzTraceOutput(f *testing.F) {
	f.Add([]byte("total 1234\nbuffer iomap_writepage_map 1000\norder 2 7\n"))
	f.Add([]byte("event iomap_readpage\nmissing iomap_writepage\ndev 254:16\n"))
	f.Add([]byte("notracefs\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if c, err := ParseCounts(data); err == nil {
			if c.Total < 0 {
				t.Fatalf("total %d", c.Total)
			}
			for k, n := range c.ByEvent {
				if n < 0 {
					t.Fatalf("%s: %d", k, n)
				}
			}
			for k, n := range c.ByOrder {
				if n < 0 {
					t.Fatalf("order %s: %d", k, n)
				}
			}
		}
		var a record.IomapActivity
		if err := ParseStart(data, &a); err == nil && (a.Dev == "" || len(a.Enabled) == 0) {
			t.Fatalf("accepted %+v", a)
		}
	})
}
