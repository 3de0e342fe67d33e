package guest

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// openFile opens work file i and checks that it has the layout's size,
// since a short file would SIGBUS every mmap access past EOF.
func openFile(l Layout, i, mode int) (int, error) {
	path := l.Path(i)
	fd, err := unix.Open(path, mode|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open %s: %w", path, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("stat %s: %w", path, err)
	}
	if st.Size != l.FileSize() {
		unix.Close(fd)
		return -1, fmt.Errorf("%s is %d bytes, layout expects %d (run prepare with the same --blocks/--block-size)", path, st.Size, l.FileSize())
	}
	return fd, nil
}

// openFiles opens every work file; on error it closes what it opened.
func openFiles(l Layout, mode int) ([]int, error) {
	fds := make([]int, 0, l.Files)
	for i := 0; i < l.Files; i++ {
		fd, err := openFile(l, i, mode)
		if err != nil {
			closeAll(fds)
			return nil, err
		}
		fds = append(fds, fd)
	}
	return fds, nil
}

func closeAll(fds []int) {
	for _, fd := range fds {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
}

// errList keeps the first few error strings and counts the rest, so a
// failing loop cannot blow up the JSON report.
type errList struct {
	list  []string
	total int
}

const maxErrors = 100

func (e *errList) add(format string, args ...any) {
	e.total++
	if len(e.list) < maxErrors {
		e.list = append(e.list, fmt.Sprintf(format, args...))
	}
}

func (e *errList) strings() []string {
	if e.list == nil {
		return []string{}
	}
	return e.list
}
