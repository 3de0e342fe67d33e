package harness

import (
	"testing"

	"patchbay/record"
)

// FuzzTraceOutput: the tracefs scripts' output comes from a guest that may
// be broken; accepted counts are never negative.
func FuzzTraceOutput(f *testing.F) {
	f.Add([]byte("total 1234\nbuffer iomap_writepage_map 1000\norder 2 7\n"))
	f.Add([]byte("event iomap_readpage\nmissing iomap_writepage\ndev 254:16\n"))
	f.Add([]byte("notracefs\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if c, err := parseTraceCounts(data); err == nil {
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
		if err := parseTraceStart(data, &a); err == nil && (a.Dev == "" || len(a.Enabled) == 0) {
			t.Fatalf("accepted %+v", a)
		}
	})
}
