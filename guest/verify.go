package guest

import (
	"encoding/json"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// VerifyConfig configures a verification pass.
type VerifyConfig struct {
	Layout
	Phase     string
	Expected  [][]int64 // files x blocks; nil = generation 0 everywhere
	Mmap      bool      // also read every block through a fresh mapping
	MaxReport int
	// AtLeast: Expected is a floor (after a power cut, the acknowledged
	// generations), so a later generation ("future") is not bad.
	AtLeast bool
}

// Found identifies what a bad block actually contained.
type Found struct {
	File   uint32 `json:"file"`
	Block  uint32 `json:"block"`
	Writer uint32 `json:"writer"`
	Gen    uint64 `json:"gen"`
}

// Bad is one non-ok block in the verify report.
type Bad struct {
	File        int    `json:"file"`
	Block       int    `json:"block"`
	Class       Class  `json:"class"`
	ExpectedGen int64  `json:"expected_gen"`
	Found       *Found `json:"found"`
	Via         string `json:"via"`
	Detail      string `json:"detail,omitempty"`
}

// VerifyReport is the JSON document printed by `pbguest verify`.
// Counts covers the pread pass; MmapCounts the mmap pass when requested.
type VerifyReport struct {
	Phase      string        `json:"phase"`
	Blocks     int           `json:"blocks"`
	Counts     map[Class]int `json:"counts"`
	MmapCounts map[Class]int `json:"mmap_counts,omitempty"`
	Bad        []Bad         `json:"bad"`
	BadTotal   int           `json:"bad_total"`
	Acks       *AckStats     `json:"acks,omitempty"` // with --acks: what the floor came from
}

// LoadExpected builds the expected-generation table as the per-block
// maximum over write reports stored in paths. Blocks nobody wrote stay 0.
func LoadExpected(l Layout, paths []string) ([][]int64, error) {
	exp := l.NewGens(0)
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("read --expect: %w", err)
		}
		var wr WriteReport
		if err := json.Unmarshal(data, &wr); err != nil {
			return nil, fmt.Errorf("parse --expect %s: %w", p, err)
		}
		if err := MergeExpected(exp, wr.Gens); err != nil {
			return nil, fmt.Errorf("--expect %s: %w", p, err)
		}
	}
	return exp, nil
}

// MergeExpected raises exp to gens block by block; shapes must match.
func MergeExpected(exp, gens [][]int64) error {
	if len(gens) != len(exp) {
		return fmt.Errorf("gens has %d files, layout has %d", len(gens), len(exp))
	}
	for f := range gens {
		if len(gens[f]) != len(exp[f]) {
			return fmt.Errorf("gens file %d has %d blocks, layout has %d", f, len(gens[f]), len(exp[f]))
		}
		for b, g := range gens[f] {
			exp[f][b] = max(exp[f][b], g)
		}
	}
	return nil
}

// Verify reads every block back and classifies it against Expected.
func Verify(cfg VerifyConfig) (VerifyReport, error) {
	if err := cfg.Validate(); err != nil {
		return VerifyReport{}, err
	}
	exp := cfg.Expected
	if exp == nil {
		exp = cfg.NewGens(0)
	} else if err := MergeExpected(cfg.NewGens(0), exp); err != nil {
		return VerifyReport{}, fmt.Errorf("verify expected table: %w", err)
	}
	fds, err := openFiles(cfg.Layout, unix.O_RDONLY)
	if err != nil {
		return VerifyReport{}, fmt.Errorf("verify: %w", err)
	}
	defer closeAll(fds)

	rep := VerifyReport{Phase: cfg.Phase, Blocks: cfg.Files * cfg.Blocks, Counts: newCounts(), Bad: []Bad{}}
	if cfg.Mmap {
		rep.MmapCounts = newCounts()
	}
	buf := make([]byte, cfg.BlockSize)
	for f, fd := range fds {
		for b := 0; b < cfg.Blocks; b++ {
			off := int64(b) * int64(cfg.BlockSize)
			n, err := unix.Pread(fd, buf, off)
			switch {
			case err != nil:
				rep.add(cfg, rep.Counts, Bad{File: f, Block: b, Class: ClassIOError, Detail: err.Error()}, exp)
			case n < len(buf):
				rep.add(cfg, rep.Counts, Bad{File: f, Block: b, Class: ClassShort, Detail: fmt.Sprintf("read %d bytes", n)}, exp)
			default:
				rep.classify(cfg, rep.Counts, buf, f, b, "pread", exp)
			}
		}
		if cfg.Mmap {
			if err := rep.verifyMapped(cfg, fd, f, buf, exp); err != nil {
				return rep, err
			}
		}
	}
	return rep, nil
}

// verifyMapped checks file f through a fresh read-only shared mapping,
// which sees the page cache the way a faulting process does.
func (r *VerifyReport) verifyMapped(cfg VerifyConfig, fd, f int, buf []byte, exp [][]int64) error {
	m, err := unix.Mmap(fd, 0, int(cfg.FileSize()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("verify mmap %s: %w", FileName(f), err)
	}
	defer unix.Munmap(m)
	for b := 0; b < cfg.Blocks; b++ {
		off := b * cfg.BlockSize
		if err := safeCopy(buf, m[off:off+cfg.BlockSize]); err != nil {
			r.add(cfg, r.MmapCounts, Bad{File: f, Block: b, Class: ClassFault, Via: "mmap", Detail: err.Error()}, exp)
			continue
		}
		r.classify(cfg, r.MmapCounts, buf, f, b, "mmap", exp)
	}
	return nil
}

func (r *VerifyReport) classify(cfg VerifyConfig, counts map[Class]int, buf []byte, f, b int, via string, exp [][]int64) {
	v := Classify(buf, uint32(f), uint32(b), cfg.Seed, uint64(max(exp[f][b], 0)))
	bad := Bad{File: f, Block: b, Class: v.Class, Via: via}
	if v.Found != nil {
		bad.Found = &Found{File: v.Found.File, Block: v.Found.Block, Writer: v.Found.Writer, Gen: v.Found.Gen}
	}
	r.add(cfg, counts, bad, exp)
}

func (r *VerifyReport) add(cfg VerifyConfig, counts map[Class]int, bad Bad, exp [][]int64) {
	counts[bad.Class]++
	if bad.Class == ClassOK || (cfg.AtLeast && bad.Class == ClassFuture) {
		return
	}
	if bad.Via == "" {
		bad.Via = "pread"
	}
	bad.ExpectedGen = exp[bad.File][bad.Block]
	r.BadTotal++
	if len(r.Bad) < cfg.MaxReport {
		r.Bad = append(r.Bad, bad)
	}
}

func newCounts() map[Class]int {
	c := map[Class]int{}
	for _, k := range AllClasses() {
		c[k] = 0
	}
	return c
}
