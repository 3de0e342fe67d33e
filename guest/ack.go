package guest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc64"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// Acknowledgement log for power-cut runs. After each fsync, fdatasync or
// msync(MS_SYNC) that succeeded, a writer records the generations it had
// completed in that file on a separate raw disk, with O_DIRECT|O_DSYNC, so
// the record is on the (virtual) disk before the writer goes on. After the
// VM is cut and booted again, verify reads the records back: every block
// must hold at least its acknowledged generation. The host cannot ask a
// dead guest what it acknowledged; this disk outlives it.
//
// Layout: for each (writer, file) two slots of AckSlotSize(blocks) bytes,
// written alternately with an increasing sequence number, so a record torn
// by the cut leaves the previous one intact. A slot:
//
//	0  magic "PBACK001"   8  seed   16 writer u32   20 file u32
//	24 seq u64            32 blocks u32  36 zero u32  40 crc64 (field as 0)
//	48..64 zero           64 gens: blocks x int64 (-1: not this writer's)
const (
	ackMagic  uint64 = 0x3130304B43414250 // "PBACK001" little endian
	ackHeader        = 64
	ackAlign         = 4096 // O_DIRECT alignment that holds for any logical block size
)

// AckSlotSize is the byte size of one slot for files of the given blocks.
func AckSlotSize(blocks int) int {
	n := ackHeader + 8*blocks
	return (n + ackAlign - 1) / ackAlign * ackAlign
}

// AckDiskSize is the smallest ack disk for a layout.
func AckDiskSize(l Layout) int64 {
	return int64(2*l.Writers*l.Files) * int64(AckSlotSize(l.Blocks))
}

func ackSlotOffset(l Layout, writer, file int, seq uint64) int64 {
	slot := int64((writer*l.Files+file)*2) + int64(seq%2)
	return slot * int64(AckSlotSize(l.Blocks))
}

// AckLog is one writer's handle on the ack disk.
type AckLog struct {
	l      Layout
	writer int
	fd     int
	buf    []byte // page-aligned (anonymous mapping) for O_DIRECT
	seq    []uint64
}

// OpenAckLog opens the ack disk for writer id. The disk must be at least
// AckDiskSize(l) bytes.
func OpenAckLog(path string, l Layout, id int) (*AckLog, error) {
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_DIRECT|unix.O_DSYNC, 0)
	if err != nil {
		return nil, fmt.Errorf("ack disk %s: %w", path, err)
	}
	size, err := unix.Seek(fd, 0, io.SeekEnd)
	if err != nil || size < AckDiskSize(l) {
		unix.Close(fd)
		return nil, fmt.Errorf("ack disk %s: %d bytes, need %d (err %v)", path, size, AckDiskSize(l), err)
	}
	buf, err := unix.Mmap(-1, 0, AckSlotSize(l.Blocks), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("ack buffer: %w", err)
	}
	return &AckLog{l: l, writer: id, fd: fd, buf: buf, seq: make([]uint64, l.Files)}, nil
}

// Ack records that gens (one file's row: -1 where not written) are durable.
func (a *AckLog) Ack(file int, gens []int64) error {
	a.seq[file]++
	encodeAck(a.buf, a.l, a.writer, file, a.seq[file], gens)
	n, err := unix.Pwrite(a.fd, a.buf, ackSlotOffset(a.l, a.writer, file, a.seq[file]))
	if err == nil && n != len(a.buf) {
		err = fmt.Errorf("short write %d of %d", n, len(a.buf))
	}
	if err != nil {
		return fmt.Errorf("ack %s seq %d: %w", FileName(file), a.seq[file], err)
	}
	return nil
}

// Close releases the disk and the buffer.
func (a *AckLog) Close() error {
	unix.Munmap(a.buf)
	return unix.Close(a.fd)
}

func encodeAck(dst []byte, l Layout, writer, file int, seq uint64, gens []int64) {
	clear(dst)
	le := binary.LittleEndian
	le.PutUint64(dst[0:], ackMagic)
	le.PutUint64(dst[8:], l.Seed)
	le.PutUint32(dst[16:], uint32(writer))
	le.PutUint32(dst[20:], uint32(file))
	le.PutUint64(dst[24:], seq)
	le.PutUint32(dst[32:], uint32(l.Blocks))
	for b, g := range gens {
		le.PutUint64(dst[ackHeader+8*b:], uint64(g))
	}
	le.PutUint64(dst[40:], ackChecksum(dst[:ackHeader+8*l.Blocks]))
}

// ackChecksum is CRC64-ECMA over the record with its checksum field as 0.
func ackChecksum(rec []byte) uint64 {
	tab := crc64.MakeTable(crc64.ECMA)
	var zero [8]byte
	c := crc64.Update(0, tab, rec[:40])
	c = crc64.Update(c, tab, zero[:])
	return crc64.Update(c, tab, rec[48:])
}

// decodeAck returns the record's sequence number and generations, or ok
// false for a slot never written or torn.
func decodeAck(src []byte, l Layout, writer, file int) (seq uint64, gens []int64, ok bool) {
	le := binary.LittleEndian
	n := ackHeader + 8*l.Blocks
	if len(src) < n || le.Uint64(src[0:]) != ackMagic || le.Uint64(src[8:]) != l.Seed ||
		le.Uint32(src[16:]) != uint32(writer) || le.Uint32(src[20:]) != uint32(file) ||
		le.Uint32(src[32:]) != uint32(l.Blocks) || le.Uint64(src[40:]) != ackChecksum(src[:n]) {
		return 0, nil, false
	}
	gens = make([]int64, l.Blocks)
	for b := range gens {
		gens[b] = int64(le.Uint64(src[ackHeader+8*b:]))
	}
	return le.Uint64(src[24:]), gens, true
}

// AckStats says how much a power-cut run acknowledged before the cut.
type AckStats struct {
	Records     uint64 `json:"records"`      // acknowledgements written (sum of the last sequence numbers)
	AckedBlocks int    `json:"acked_blocks"` // blocks with an acknowledged generation above 0
	MaxGen      int64  `json:"max_gen"`      // highest generation acknowledged
}

// ReadAcks reads the ack disk at path and returns, per block, the lowest
// generation it must hold: the last one acknowledged, or 0 (prepare wrote
// and synced generation 0 everywhere).
func ReadAcks(path string, l Layout) ([][]int64, AckStats, error) {
	var st AckStats
	if err := l.Validate(); err != nil {
		return nil, st, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, st, fmt.Errorf("ack disk: %w", err)
	}
	defer f.Close()
	floor := l.NewGens(0)
	slot := make([]byte, AckSlotSize(l.Blocks))
	for w := 0; w < l.Writers; w++ {
		for file := 0; file < l.Files; file++ {
			var best []int64
			var bestSeq uint64
			for s := uint64(0); s < 2; s++ {
				off := ackSlotOffset(l, w, file, s)
				if _, err := f.ReadAt(slot, off); err != nil {
					if errors.Is(err, io.EOF) {
						return nil, st, fmt.Errorf("ack disk %s: too small for %d writers x %d files (ends before offset %d)", path, l.Writers, l.Files, off)
					}
					return nil, st, fmt.Errorf("ack disk %s offset %d: %w", path, off, err)
				}
				if seq, gens, ok := decodeAck(slot, l, w, file); ok && seq > bestSeq {
					best, bestSeq = gens, seq
				}
			}
			st.Records += bestSeq
			for b, g := range best {
				if g < 0 {
					continue
				}
				if l.Owner(file, b) != w {
					return nil, st, fmt.Errorf("ack disk %s: writer %d acknowledged %s block %d, owned by writer %d", path, w, FileName(file), b, l.Owner(file, b))
				}
				floor[file][b] = max(floor[file][b], g)
			}
		}
	}
	for _, row := range floor {
		for _, g := range row {
			if g > 0 {
				st.AckedBlocks++
			}
			st.MaxGen = max(st.MaxGen, g)
		}
	}
	return floor, st, nil
}
