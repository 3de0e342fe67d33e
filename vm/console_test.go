package vm

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// chunks reads like a pipe: a few bytes per Read.
type chunks struct {
	data []byte
	size int
}

func (c *chunks) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), c.size)], c.data)
	c.data = c.data[n:]
	return n, nil
}

// capture copies data into a fresh console log with limit, closes it and
// returns the log and the file's content.
func capture(t *testing.T, limit int, data []byte) (*consoleLog, []byte) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "console.log")
	c, err := newConsoleLog(path, limit)
	if err != nil {
		t.Fatal(err)
	}
	c.copyFrom(&chunks{data: data, size: 7})
	c.close()
	file, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.writeErr(); err != nil {
		t.Fatal(err)
	}
	return c, file
}

// TestConsoleCap: past its cap the console is cut, and says so: the count
// of dropped bytes, a marker where the cut is and a last line with the
// count, in the file and in the copy triage reads.
func TestConsoleCap(t *testing.T) {
	var data []byte
	for i := 0; len(data) < 250; i++ {
		data = fmt.Appendf(data, "[%4d.000000] line %d\n", i, i)
	}
	c, file := capture(t, 100, data)
	want := string(data[:100]) +
		"\n[patchbay: console truncated at 100 bytes: further output dropped]\n" +
		fmt.Sprintf("[patchbay: console truncated: %d bytes dropped after the first 100]\n", len(data)-100)
	if string(file) != want {
		t.Fatalf("console.log:\n%s\nwant:\n%s", file, want)
	}
	if c.droppedBytes() != int64(len(data)-100) {
		t.Errorf("dropped %d bytes, want %d", c.droppedBytes(), len(data)-100)
	}
	if !bytes.Equal(c.bytes(), file) {
		t.Errorf("the copy for triage differs from console.log:\n%s", c.bytes())
	}
}

// TestConsoleUnderCap: up to the cap nothing is dropped or marked.
func TestConsoleUnderCap(t *testing.T) {
	for _, n := range []int{0, 99, 100} {
		data := []byte(strings.Repeat("x", n))
		c, file := capture(t, 100, data)
		if !bytes.Equal(file, data) || c.droppedBytes() != 0 || !bytes.Equal(c.bytes(), data) {
			t.Errorf("%d bytes under a 100-byte cap: file %q dropped %d", n, file, c.droppedBytes())
		}
	}
}

// TestConsoleDefaultCap: 0 means the default cap, not no console at all.
func TestConsoleDefaultCap(t *testing.T) {
	c, file := capture(t, 0, []byte("boot\n"))
	if c.limit != defaultConsoleLimit || string(file) != "boot\n" {
		t.Fatalf("limit %d file %q", c.limit, file)
	}
}
