package vm

import (
	"bytes"
	"io"
	"os"
	"sync"
)

// maxConsoleMemory bounds what is kept in memory for triage; the file keeps
// everything.
const maxConsoleMemory = 32 << 20

// consoleLog copies the serial console to a file and keeps it in memory.
type consoleLog struct {
	mu   sync.Mutex
	f    *os.File
	buf  bytes.Buffer
	lost int
}

func newConsoleLog(path string) (*consoleLog, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	return &consoleLog{f: f}, nil
}

func (c *consoleLog) copyFrom(r io.Reader) {
	b := make([]byte, 64<<10)
	for {
		n, err := r.Read(b)
		if n > 0 {
			c.mu.Lock()
			if c.f != nil {
				c.f.Write(b[:n])
			}
			if c.buf.Len()+n <= maxConsoleMemory {
				c.buf.Write(b[:n])
			} else {
				c.lost += n
			}
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
		c.f.Close()
		c.f = nil
	}
}
