package record

import (
	"strings"
	"testing"
)

func TestIomapSummaryWarnsOnOrderZero(t *testing.T) {
	a := &IomapActivity{Dev: "254:16", Setup: 5, Workload: 9, Folios: 300}
	if !a.OnlyOrderZero() || !strings.Contains(a.Summary(), "only order-0 folios") {
		t.Errorf("order 0 only: %v %q", a.OnlyOrderZero(), a.Summary())
	}
	a.LargeFolios, a.LargeFolioOrders = 12, map[string]int64{"2": 10, "4": 2}
	if a.OnlyOrderZero() || !strings.Contains(a.Summary(), "(orders 2 10, 4 2)") {
		t.Errorf("with large folios: %v %q", a.OnlyOrderZero(), a.Summary())
	}
	if (&IomapActivity{}).OnlyOrderZero() {
		t.Error("no folios at all is not 'only order 0'")
	}
}
