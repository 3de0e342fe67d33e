package casespec

import (
	"testing"
	"time"
)

// TestPowerCutMoment: the cut time stays in the range, is the same for a
// seed, and spreads over the range across seeds.
func TestPowerCutMoment(t *testing.T) {
	p := PowerCutSpec{After: "5s..15s"}
	if err := p.Parse(); err != nil {
		t.Fatal(err)
	}
	var lowHalf, highHalf int
	for seed := uint64(0); seed < 1000; seed++ {
		m := p.Moment(seed)
		if m < 5*time.Second || m > 15*time.Second || m%time.Millisecond != 0 {
			t.Fatalf("seed %d: moment %s outside 5s..15s or not whole ms", seed, m)
		}
		if m != p.Moment(seed) {
			t.Fatalf("seed %d: moment not reproducible", seed)
		}
		if m < 10*time.Second {
			lowHalf++
		} else {
			highHalf++
		}
	}
	if lowHalf < 400 || highHalf < 400 {
		t.Errorf("1000 seeds: %d below 10s, %d above: not spread over the range", lowHalf, highHalf)
	}
	one := PowerCutSpec{After: "7s"}
	if err := one.Parse(); err != nil || one.Moment(3) != 7*time.Second {
		t.Errorf("single moment: %s, %v", one.Moment(3), err)
	}
}
