package harness

import (
	"strings"
	"testing"
)

func TestParseTraceStart(t *testing.T) {
	var a IomapActivity
	out := "event iomap_readpage\nmissing iomap_writepage\nevent iomap_writepage_map\ndev 254:16\n"
	if err := parseTraceStart([]byte(out), &a); err != nil {
		t.Fatal(err)
	}
	if a.Dev != "254:16" || strings.Join(a.Enabled, ",") != "iomap_readpage,iomap_writepage_map" || strings.Join(a.Missing, ",") != "iomap_writepage" {
		t.Errorf("activity = %+v", a)
	}
	for out, want := range map[string]string{
		"notracefs\n": "no tracefs",
		"missing iomap_readpage\nmissing iomap_readahead\ndev 254:16\n": "none of the iomap trace events",
		"event iomap_readpage\n": "no device",
	} {
		var a IomapActivity
		err := parseTraceStart([]byte(out), &a)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", out, err, want)
		}
	}
}

func TestParseTraceCounts(t *testing.T) {
	total, buf, err := parseTraceCounts([]byte("total 1234\nbuffer iomap_writepage_map 1000\nbuffer iomap_readahead 3\n"))
	if err != nil {
		t.Fatal(err)
	}
	if total != 1234 || buf["iomap_writepage_map"] != 1000 || buf["iomap_readahead"] != 3 || len(buf) != 2 {
		t.Errorf("total %d, buffer %v", total, buf)
	}
	if total, buf, err := parseTraceCounts([]byte("total 0\n")); err != nil || total != 0 || buf != nil {
		t.Errorf("zero: %d %v %v", total, buf, err)
	}
	for _, bad := range []string{"", "total x\n", "total -1\n", "total 1\nbuffer iomap_readpage many\n"} {
		if _, _, err := parseTraceCounts([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestIomapNotInUse(t *testing.T) {
	a := &IomapActivity{Dev: "254:16", Enabled: []string{"iomap_readpage", "iomap_writepage_map"}}
	r := a.notInUse("buffered_iomap")
	for _, want := range []string{"buffered iomap not in use", "0 events", "iomap_writepage_map", "254:16", "-o buffered_iomap"} {
		if !strings.Contains(r, want) {
			t.Errorf("reason %q does not contain %q", r, want)
		}
	}
	a.Setup = 1
	if r := a.notInUse("buffered_iomap"); r != "" {
		t.Errorf("with events: reason %q", r)
	}
}

// The script filters on the kernel's dev_t and enables only the events it
// is given: a wrong encoding or event set would count the wrong disk.
func TestTraceStartScript(t *testing.T) {
	s := iomapTracer{events: []string{"iomap_readpage", "iomap_writepage_map"}, mount: "/mnt/scratch"}.startScript()
	for _, want := range []string{"mountpoint -d /mnt/scratch", "<< 20", `"dev == $kdev"`, "for e in iomap_readpage iomap_writepage_map;"} {
		if !strings.Contains(s, want) {
			t.Errorf("script lacks %q:\n%s", want, s)
		}
	}
	for _, e := range BufferedIomapEvents {
		if strings.Contains(e, "dio") || e == "iomap_iter" {
			t.Errorf("%s also fires for direct I/O or FIEMAP: not evidence of buffered iomap", e)
		}
	}
}
