// Package guest is the workload that runs inside the test VM: it lays out
// self-describing blocks, rewrites them through mmap or pwrite, moves
// extents with EXT4_IOC_MOVE_EXT and classifies what it reads back.
package guest

import (
	"encoding/binary"
	"hash/crc64"
)

// Block header layout (little endian). The header is self-describing so
// that a block found in the wrong place can still be identified.
const (
	Magic      uint64 = 0x314B4C4259414250 // "PBAYBLK1" read as little endian
	HeaderSize        = 64

	offMagic    = 0
	offFile     = 8
	offBlock    = 12
	offWriter   = 16
	offReserved = 20
	offGen      = 24
	offSeed     = 32
	offChecksum = 40
)

// Header is the decoded 64-byte block header.
type Header struct {
	File     uint32 `json:"file"`
	Block    uint32 `json:"block"`
	Writer   uint32 `json:"writer"`
	Gen      uint64 `json:"gen"`
	Seed     uint64 `json:"seed"`
	Checksum uint64 `json:"-"`
}

// Class is the verdict for one block read back from disk.
type Class string

// Classes produced by Classify, plus the I/O-level ones produced by Verify.
const (
	ClassOK        Class = "ok"
	ClassZeros     Class = "zeros"     // all zero: the write was lost
	ClassStale     Class = "stale"     // intact, this block, older gen
	ClassFuture    Class = "future"    // intact, this block, newer gen than any writer reported
	ClassMisplaced Class = "misplaced" // intact block of another file/block
	ClassTorn      Class = "torn"      // this block's header, checksum wrong
	ClassGarbage   Class = "garbage"   // anything else
	ClassShort     Class = "short"     // Verify: read hit EOF before the block ended
	ClassIOError   Class = "ioerror"   // Verify: pread failed
	ClassFault     Class = "fault"     // Verify: SIGBUS while reading the mapping
)

// AllClasses lists every class so reports can show explicit zero counts.
func AllClasses() []Class {
	return []Class{ClassOK, ClassZeros, ClassStale, ClassFuture, ClassMisplaced,
		ClassTorn, ClassGarbage, ClassShort, ClassIOError, ClassFault}
}

// Checksum is CRC64-ECMA over the whole block with the checksum field
// treated as zero. It returns 0 for buffers too short to hold a header.
func Checksum(b []byte) uint64 {
	if len(b) < HeaderSize {
		return 0
	}
	// MakeTable returns a shared pre-built table for ECMA, so this is cheap.
	tab := crc64.MakeTable(crc64.ECMA)
	var zero [8]byte
	c := crc64.Update(0, tab, b[:offChecksum])
	c = crc64.Update(c, tab, zero[:])
	return crc64.Update(c, tab, b[offChecksum+8:])
}

// payloadSeed mixes every identity field so that any two distinct
// (seed, file, block, writer, gen) tuples produce unrelated payloads.
func payloadSeed(h Header) uint64 {
	s := Mix64(h.Seed ^ uint64(h.File)<<32 ^ uint64(h.Block))
	s = Mix64(s ^ uint64(h.Writer)<<32 ^ 0x5bd1e995)
	return Mix64(s ^ h.Gen)
}

// EncodeBlock fills dst (one whole block) with header h, the deterministic
// payload and the checksum. len(dst) must be at least HeaderSize.
func EncodeBlock(dst []byte, h Header) {
	clear(dst[:HeaderSize])
	le := binary.LittleEndian
	le.PutUint64(dst[offMagic:], Magic)
	le.PutUint32(dst[offFile:], h.File)
	le.PutUint32(dst[offBlock:], h.Block)
	le.PutUint32(dst[offWriter:], h.Writer)
	le.PutUint32(dst[offReserved:], 0)
	le.PutUint64(dst[offGen:], h.Gen)
	le.PutUint64(dst[offSeed:], h.Seed)

	rng := NewRNG(payloadSeed(h))
	p := dst[HeaderSize:]
	for len(p) >= 8 {
		le.PutUint64(p, rng.Next())
		p = p[8:]
	}
	if len(p) > 0 {
		var tail [8]byte
		le.PutUint64(tail[:], rng.Next())
		copy(p, tail[:])
	}
	le.PutUint64(dst[offChecksum:], Checksum(dst))
}

// DecodeHeader parses the header; ok is false when the buffer is too short
// or the magic does not match. The checksum is not verified here.
func DecodeHeader(b []byte) (h Header, ok bool) {
	if len(b) < HeaderSize {
		return Header{}, false
	}
	le := binary.LittleEndian
	if le.Uint64(b[offMagic:]) != Magic {
		return Header{}, false
	}
	return Header{
		File:     le.Uint32(b[offFile:]),
		Block:    le.Uint32(b[offBlock:]),
		Writer:   le.Uint32(b[offWriter:]),
		Gen:      le.Uint64(b[offGen:]),
		Seed:     le.Uint64(b[offSeed:]),
		Checksum: le.Uint64(b[offChecksum:]),
	}, true
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// Verdict is the result of classifying one block.
type Verdict struct {
	Class Class
	// Found is the decoded header when the magic matched, even if the
	// checksum did not, so reports can say what was there instead.
	Found *Header
}

// Classify judges block b, expected to be block (file, block) of a run with
// the given seed at generation expected. It never panics on any input.
func Classify(b []byte, file, block uint32, seed, expected uint64) Verdict {
	if len(b) > 0 && allZero(b) {
		return Verdict{Class: ClassZeros}
	}
	h, ok := DecodeHeader(b)
	if !ok {
		return Verdict{Class: ClassGarbage}
	}
	found := &h
	mine := h.File == file && h.Block == block && h.Seed == seed
	intact := binary.LittleEndian.Uint32(b[offReserved:]) == 0 && Checksum(b) == h.Checksum
	switch {
	case mine && intact && h.Gen == expected:
		return Verdict{ClassOK, found}
	case mine && intact && h.Gen < expected:
		return Verdict{ClassStale, found}
	case mine && intact:
		return Verdict{ClassFuture, found}
	case mine:
		return Verdict{ClassTorn, found}
	case intact && h.Seed == seed:
		return Verdict{ClassMisplaced, found}
	default:
		return Verdict{ClassGarbage, found}
	}
}
