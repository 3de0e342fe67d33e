package guest

import (
	"encoding/json"
	"testing"
	"time"
)

func TestSeriesBuckets(t *testing.T) {
	t0 := time.Unix(1000, 0)
	s := NewSeries(t0)
	s.Add("writes", t0)
	s.Add("writes", t0.Add(900*time.Millisecond))
	s.Add("writes", t0.Add(2500*time.Millisecond))
	s.Add("moved", t0.Add(-time.Second)) // clock step: second 0
	s.Add("moved", t0.Add(10*time.Hour)) // bounded
	var nilSeries *Series
	nilSeries.Add("writes", t0) // a worker without a series must not panic
	data, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var back struct {
		StartUnix float64            `json:"start_unix"`
		Counts    map[string][]int64 `json:"counts"`
	}
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if back.StartUnix != 1000 {
		t.Errorf("start_unix %v", back.StartUnix)
	}
	if w := back.Counts["writes"]; len(w) != 3 || w[0] != 2 || w[1] != 0 || w[2] != 1 {
		t.Errorf("writes per second %v, want [2 0 1]", w)
	}
	if m := back.Counts["moved"]; len(m) != maxSeriesSeconds || m[0] != 1 || m[maxSeriesSeconds-1] != 1 {
		t.Errorf("moved: len %d", len(m))
	}
}
