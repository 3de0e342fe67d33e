package main

import (
	"bytes"
	"fmt"
	"io"
	"sync"
)

// liveStatus keeps a block of status lines at the bottom of a terminal:
// log lines written through it scroll above the block, and Set redraws the
// block in place (ANSI: move to the block's first line, clear to the end
// of the screen). Only for terminals; CI logs get plain lines instead.
type liveStatus struct {
	mu    sync.Mutex
	w     io.Writer
	lines []string
	drawn int // lines of the block on screen
}

func newLiveStatus(w io.Writer) *liveStatus { return &liveStatus{w: w} }

// clear erases the drawn block; the caller holds mu.
func (s *liveStatus) clear(b *bytes.Buffer) {
	if s.drawn > 0 {
		fmt.Fprintf(b, "\x1b[%dF\x1b[J", s.drawn)
		s.drawn = 0
	}
}

// draw prints the block; the caller holds mu.
func (s *liveStatus) draw(b *bytes.Buffer) {
	for _, l := range s.lines {
		fmt.Fprintf(b, "\x1b[1m%s\x1b[0m\n", l)
	}
	s.drawn = len(s.lines)
}

// Write prints log text above the status block.
func (s *liveStatus) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b bytes.Buffer
	s.clear(&b)
	b.Write(p)
	if len(p) > 0 && p[len(p)-1] != '\n' {
		b.WriteByte('\n')
	}
	s.draw(&b)
	if _, err := s.w.Write(b.Bytes()); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Set replaces the status block.
func (s *liveStatus) Set(lines []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b bytes.Buffer
	s.clear(&b)
	s.lines = append(s.lines[:0], lines...)
	s.draw(&b)
	s.w.Write(b.Bytes())
}
