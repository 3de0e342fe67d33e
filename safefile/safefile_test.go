package safefile

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// readWithin fails the test if ReadFile does not return within a second.
func readWithin(t *testing.T, path string, limit int64) ([]byte, error) {
	t.Helper()
	type res struct {
		b   []byte
		err error
	}
	ch := make(chan res, 1)
	go func() {
		b, err := ReadFile(path, limit)
		ch <- res{b, err}
	}()
	select {
	case r := <-ch:
		return r.b, r.err
	case <-time.After(time.Second):
		t.Fatalf("ReadFile(%s) did not return within a second", path)
		return nil, nil
	}
}

func TestReadFileRegular(t *testing.T) {
	p := filepath.Join(t.TempDir(), "case.yaml")
	os.WriteFile(p, []byte("name: x\n"), 0o644)
	b, err := readWithin(t, p, SmallCap)
	if err != nil || string(b) != "name: x\n" {
		t.Fatalf("got %q, %v", b, err)
	}
	// Exactly at the cap is fine.
	if b, err := readWithin(t, p, 8); err != nil || len(b) != 8 {
		t.Fatalf("at cap: %q, %v", b, err)
	}
}

func TestReadFileFIFO(t *testing.T) {
	p := filepath.Join(t.TempDir(), "case.yaml")
	if err := syscall.Mkfifo(p, 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	_, err := readWithin(t, p, SmallCap)
	if err == nil || !strings.Contains(err.Error(), "a FIFO") || !strings.Contains(err.Error(), p) {
		t.Fatalf("want a FIFO refused naming %s, got %v", p, err)
	}
}

func TestReadFileDevZeroSymlink(t *testing.T) {
	p := filepath.Join(t.TempDir(), "case.yaml")
	if err := os.Symlink("/dev/zero", p); err != nil {
		t.Fatal(err)
	}
	_, err := readWithin(t, p, SmallCap)
	if err == nil || !strings.Contains(err.Error(), "symlink to /dev/zero") || !strings.Contains(err.Error(), "character device") {
		t.Fatalf("want /dev/zero refused naming the target, got %v", err)
	}
}

func TestReadFileDirectory(t *testing.T) {
	d := t.TempDir()
	if _, err := readWithin(t, d, SmallCap); err == nil || !strings.Contains(err.Error(), "a directory") {
		t.Fatalf("want a directory refused, got %v", err)
	}
}

func TestReadFileOversize(t *testing.T) {
	p := filepath.Join(t.TempDir(), "big.mbox")
	os.WriteFile(p, make([]byte, 2*MiB+1), 0o644)
	_, err := readWithin(t, p, 2*MiB)
	if err == nil || err.Error() != p+": larger than 2 MiB" {
		t.Fatalf("want %q, got %v", p+": larger than 2 MiB", err)
	}
}

func TestReadAllStreamCapped(t *testing.T) {
	f, err := os.Open("/dev/zero")
	if err != nil {
		t.Skip(err)
	}
	defer f.Close()
	_, err = ReadAll(f, "stdin", MiB)
	if err == nil || err.Error() != "stdin: larger than 1 MiB" {
		t.Fatalf("got %v", err)
	}
}
