package guest

import "time"

// maxSeriesSeconds bounds a series: a run longer than an hour keeps
// counting in its last second rather than growing without bound.
const maxSeriesSeconds = 3600

// Series counts events per whole second since a worker started, for the
// report's per-run timeline. Counts maps an event name to its count in
// second 0, 1, ...; StartUnix lets the host align workers that started at
// slightly different times. One goroutine owns a Series.
type Series struct {
	StartUnix float64            `json:"start_unix"`
	Counts    map[string][]int64 `json:"counts"`
	start     time.Time
}

// NewSeries starts a series at start.
func NewSeries(start time.Time) *Series {
	return &Series{StartUnix: float64(start.UnixNano()) / 1e9, Counts: map[string][]int64{}, start: start}
}

// Add counts one event named name now.
func (s *Series) Add(name string, now time.Time) {
	if s == nil {
		return
	}
	sec := min(max(int(now.Sub(s.start)/time.Second), 0), maxSeriesSeconds-1)
	c := s.Counts[name]
	for len(c) <= sec {
		c = append(c, 0)
	}
	c[sec]++
	s.Counts[name] = c
}
