package vm

import (
	"bytes"
	"context"
	"io"
	"os"
	"sync"
)

// maxConsoleMemory bounds what is kept in memory for triage; the file keeps
// everything.
const maxConsoleMemory = 32 << 20

// consoleLog copies the serial console to a file and keeps it in memory.
type consoleLog struct {
	mu      sync.Mutex
	f       *os.File
	buf     bytes.Buffer
	lost    int
	werr    error         // first error writing the file (disk full, ...)
	changed chan struct{} // closed and replaced on every write
}

func newConsoleLog(path string) (*consoleLog, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	return &consoleLog{f: f, changed: make(chan struct{})}, nil
}

func (c *consoleLog) copyFrom(r io.Reader) {
	b := make([]byte, 64<<10)
	for {
		n, err := r.Read(b)
		if n > 0 {
			c.mu.Lock()
			if c.f != nil && c.werr == nil {
				if _, err := c.f.Write(b[:n]); err != nil {
					c.werr = err
				}
			}
			if c.buf.Len()+n <= maxConsoleMemory {
				c.buf.Write(b[:n])
			} else {
				c.lost += n
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

func (c *consoleLog) bytes() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]byte(nil), c.buf.Bytes()...)
}

func (c *consoleLog) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.f != nil {
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
