package vm

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"sync"
)

// defaultConsoleLimit caps console.log and the copy kept for triage: a
// guest printing in a loop must not fill the host's disk or memory.
const defaultConsoleLimit = 32 << 20

// consoleLog copies the serial console to a file and keeps it in memory, up
// to a limit. Past it the output is dropped, but never silently: the file
// (and the copy) get a marker line when it starts, another with the count
// at close, and droppedBytes says how much.
type consoleLog struct {
	mu      sync.Mutex
	f       *os.File
	buf     bytes.Buffer
	limit   int           // bytes of console output kept
	kept    int           // bytes of console output kept so far (markers aside)
	dropped int64         // bytes of console output past the limit
	werr    error         // first error writing the file (disk full, ...)
	changed chan struct{} // closed and replaced on every write
}

func newConsoleLog(path string, limit int) (*consoleLog, error) {
	if limit <= 0 {
		limit = defaultConsoleLimit
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	return &consoleLog{f: f, limit: limit, changed: make(chan struct{})}, nil
}

// truncMarker starts the lines patchbay adds to a truncated console.
const truncMarker = "[patchbay: console truncated"

func (c *consoleLog) copyFrom(r io.Reader) {
	b := make([]byte, 64<<10)
	for {
		n, err := r.Read(b)
		if n > 0 {
			c.mu.Lock()
			keep := min(n, c.limit-c.kept)
			c.append(b[:keep])
			c.kept += keep
			if keep < n {
				if c.dropped == 0 {
					c.append(fmt.Appendf(nil, "\n%s at %d bytes: further output dropped]\n", truncMarker, c.limit))
				}
				c.dropped += int64(n - keep)
			}
			close(c.changed)
			c.changed = make(chan struct{})
			c.mu.Unlock()
		}
		if err != nil {
			return
		}
	}
}

// append writes to the file and the copy; c.mu is held.
func (c *consoleLog) append(b []byte) {
	if len(b) == 0 {
		return
	}
	if c.f != nil && c.werr == nil {
		if _, err := c.f.Write(b); err != nil {
			c.werr = err
		}
	}
	c.buf.Write(b)
}

func (c *consoleLog) bytes() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]byte(nil), c.buf.Bytes()...)
}

func (c *consoleLog) droppedBytes() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dropped
}

// close ends the file, with the final count when output was dropped. The
// caller has stopped the copy (QEMU exited).
func (c *consoleLog) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.f != nil {
		if c.dropped > 0 {
			c.append(fmt.Appendf(nil, "%s: %d bytes dropped after the first %d]\n", truncMarker, c.dropped, c.limit))
		}
		if err := c.f.Close(); err != nil && c.werr == nil {
			c.werr = err
		}
		c.f = nil
	}
}

func (c *consoleLog) writeErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.werr
}

// waitFor returns when the console contains text, or ctx or done ends.
func (c *consoleLog) waitFor(ctx context.Context, text []byte, done <-chan struct{}) error {
	for {
		c.mu.Lock()
		found := bytes.Contains(c.buf.Bytes(), text)
		changed := c.changed
		c.mu.Unlock()
		if found {
			return nil
		}
		select {
		case <-changed:
		case <-done:
			return ErrExited
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
