package guest

import (
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// FSJournalDataFL is FS_JOURNAL_DATA_FL (chattr +j); x/sys/unix lacks it.
const FSJournalDataFL uint32 = 0x00004000

// ext4IocMoveExt is EXT4_IOC_MOVE_EXT = _IOWR('f', 15, struct move_extent).
const ext4IocMoveExt = 0xC028660F

// moveExtent mirrors struct move_extent from fs/ext4/ext4.h (40 bytes).
type moveExtent struct {
	Reserved   uint32
	DonorFD    uint32
	OrigStart  uint64
	DonorStart uint64
	Len        uint64
	MovedLen   uint64
}

// GetFlags reads the inode flags (FS_IOC_GETFLAGS). The kernel copies an
// int despite the long-sized ioctl number, so a uint32 is the right size.
func GetFlags(fd int) (uint32, error) {
	v, err := unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS)
	if err != nil {
		return 0, fmt.Errorf("FS_IOC_GETFLAGS: %w", err)
	}
	return v, nil
}

// SetFlags writes the inode flags (FS_IOC_SETFLAGS).
func SetFlags(fd int, flags uint32) error {
	if err := unix.IoctlSetPointerInt(fd, unix.FS_IOC_SETFLAGS, int(int32(flags))); err != nil {
		return fmt.Errorf("FS_IOC_SETFLAGS %#x: %w", flags, err)
	}
	return nil
}

// MoveExt calls EXT4_IOC_MOVE_EXT for [start, start+length) blocks with
// donor_start = orig_start. moved is what the kernel reported even on
// error, since a partial move still changed the file.
func MoveExt(origFD, donorFD int, start, length uint64) (moved uint64, err error) {
	me := moveExtent{DonorFD: uint32(donorFD), OrigStart: start, DonorStart: start, Len: length}
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(origFD), ext4IocMoveExt, uintptr(unsafe.Pointer(&me)))
	runtime.KeepAlive(&me)
	if errno != 0 {
		return me.MovedLen, fmt.Errorf("EXT4_IOC_MOVE_EXT start %d len %d: %w", start, length, errno)
	}
	return me.MovedLen, nil
}

// ErrnoName names the errno inside err ("EOPNOTSUPP", "EBUSY", ...), or
// "other" when err carries none.
func ErrnoName(err error) string {
	var e syscall.Errno
	if !errors.As(err, &e) {
		return "other"
	}
	// unix.ErrnoName says ENOTSUP for 95; the kernel source and the
	// harness call it EOPNOTSUPP.
	if e == unix.EOPNOTSUPP {
		return "EOPNOTSUPP"
	}
	if n := unix.ErrnoName(e); n != "" {
		return n
	}
	return fmt.Sprintf("errno%d", int(e))
}

// faultError reports a memory fault (SIGBUS/SIGSEGV) on a mapping.
type faultError struct{ addr uintptr }

func (f faultError) Error() string { return fmt.Sprintf("memory fault at %#x", f.addr) }

// safeCopy copies src into dst, turning a fault on either (e.g. SIGBUS on a
// mapping whose backing page vanished) into an error instead of a crash.
func safeCopy(dst, src []byte) (err error) {
	old := debug.SetPanicOnFault(true)
	defer debug.SetPanicOnFault(old)
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		if re, ok := r.(interface{ Addr() uintptr }); ok {
			err = faultError{addr: re.Addr()}
			return
		}
		panic(r)
	}()
	copy(dst, src)
	return nil
}

// IsExt4 reports whether path lives on ext4.
func IsExt4(path string) (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false, fmt.Errorf("statfs %s: %w", path, err)
	}
	return st.Type == unix.EXT4_SUPER_MAGIC, nil
}

// fsIocFiemap is FS_IOC_FIEMAP = _IOWR('f', 11, struct fiemap).
const fsIocFiemap = 0xC020660B

// FIEMAP extent flags (linux/fiemap.h).
const (
	fiemapExtentLast     = 0x1
	fiemapExtentUnknown  = 0x2
	fiemapExtentDelalloc = 0x4
)

// fiemapHeader mirrors struct fiemap without its flexible array (32 bytes).
type fiemapHeader struct {
	Start         uint64
	Length        uint64
	Flags         uint32
	MappedExtents uint32
	ExtentCount   uint32
	Reserved      uint32
}

// fiemapExtent mirrors struct fiemap_extent (56 bytes).
type fiemapExtent struct {
	Logical    uint64
	Physical   uint64
	Length     uint64
	Reserved64 [2]uint64
	Flags      uint32
	Reserved   [3]uint32
}

// AllocatedBytes returns how many bytes of [off, off+n) FIEMAP reports as
// backed by allocated blocks, written or unwritten. Delalloc and unknown
// extents do not count: they have no blocks MOVE_EXT could swap.
func AllocatedBytes(fd int, off, n int64) (int64, error) {
	const batch = 32
	var req struct {
		hdr fiemapHeader
		ext [batch]fiemapExtent
	}
	pos, end := off, off+n
	var covered int64
	for pos < end {
		req.hdr = fiemapHeader{Start: uint64(pos), Length: uint64(end - pos), ExtentCount: batch}
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), fsIocFiemap, uintptr(unsafe.Pointer(&req)))
		runtime.KeepAlive(&req)
		if errno != 0 {
			return covered, fmt.Errorf("FS_IOC_FIEMAP %d+%d: %w", pos, end-pos, errno)
		}
		m := min(int(req.hdr.MappedExtents), batch)
		if m == 0 {
			break
		}
		next, last := pos, false
		for _, e := range req.ext[:m] {
			s, t := max(int64(e.Logical), pos), min(int64(e.Logical+e.Length), end)
			if t > s && e.Flags&(fiemapExtentUnknown|fiemapExtentDelalloc) == 0 {
				covered += t - s
			}
			next = max(next, int64(e.Logical+e.Length))
			last = last || e.Flags&fiemapExtentLast != 0
		}
		if last || next <= pos {
			break
		}
		pos = next
	}
	return covered, nil
}
