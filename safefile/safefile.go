// Package safefile reads files that come from users (case files, patches,
// mboxes, received results) without trusting what the path names: the open
// never blocks (a FIFO is refused, not waited on), only regular files are
// read, and no read goes past a size cap the caller chooses.
package safefile

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
)

// Caps for the kinds of input patchbay reads.
const (
	MiB       = 1 << 20
	SmallCap  = 1 * MiB   // case.yaml, case.local.yaml, series files, kconfig fragments
	PatchCap  = 64 * MiB  // patches and mboxes
	RecordCap = 256 * MiB // summary.json, run.json and other results records
)

// ReadFile returns the content of path, which must be (or be a symlink to)
// a regular file of at most limit bytes.
func ReadFile(path string, limit int64) ([]byte, error) {
	f, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readCapped(f, path, limit)
}

// Open opens path for reading without blocking and checks, on the opened
// file (not the path, which could be swapped), that it is a regular file.
func Open(path string) (*os.File, error) {
	// O_NONBLOCK: opening a FIFO with no writer returns at once instead of
	// waiting forever; it has no effect on reads of a regular file.
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	f := os.NewFile(uintptr(fd), path)
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s: not a regular file (%s)", describe(path), kind(fi.Mode()))
	}
	// Back to blocking mode so reads behave normally; a regular file
	// never blocks on read anyway.
	if err := syscall.SetNonblock(fd, false); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// ReadAll reads r up to limit bytes and fails if there is more; name is
// used in the error. For streams such as stdin.
func ReadAll(r io.Reader, name string, limit int64) ([]byte, error) {
	return readCapped(r, name, limit)
}

func readCapped(r io.Reader, name string, limit int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s: larger than %s", name, size(limit))
	}
	return data, nil
}

// describe names the symlink target when path is a symlink, so that the
// error says what was really refused.
func describe(path string) string {
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		if target, err := filepath.EvalSymlinks(path); err == nil {
			return fmt.Sprintf("%s (a symlink to %s)", path, target)
		}
		if target, err := os.Readlink(path); err == nil {
			return fmt.Sprintf("%s (a symlink to %s)", path, target)
		}
	}
	return path
}

func kind(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&os.ModeNamedPipe != 0:
		return "a FIFO"
	case m&os.ModeSocket != 0:
		return "a socket"
	case m&os.ModeCharDevice != 0:
		return "a character device"
	case m&os.ModeDevice != 0:
		return "a block device"
	}
	return "mode " + m.String()
}

func size(n int64) string {
	if n >= MiB && n%MiB == 0 {
		return fmt.Sprintf("%d MiB", n/MiB)
	}
	return fmt.Sprintf("%d bytes", n)
}
