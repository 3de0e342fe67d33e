package guest

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"
)

// Layout describes the work files shared by every subcommand. All
// subcommands of one run must be given the same values.
type Layout struct {
	Dir       string
	Files     int
	Blocks    int // blocks per file
	BlockSize int
	Writers   int // total writer count; owner of global block g is g % Writers
	Seed      uint64
}

// Validate reports the first unusable parameter.
func (l Layout) Validate() error {
	switch {
	case l.Dir == "":
		return errors.New("--dir is required")
	case l.Files <= 0:
		return fmt.Errorf("--files must be > 0, got %d", l.Files)
	case l.Blocks <= 0:
		return fmt.Errorf("--blocks must be > 0, got %d", l.Blocks)
	case l.BlockSize < 2*HeaderSize || l.BlockSize%HeaderSize != 0:
		return fmt.Errorf("--block-size must be a multiple of %d and >= %d, got %d", HeaderSize, 2*HeaderSize, l.BlockSize)
	case l.Writers <= 0:
		return fmt.Errorf("--writers must be > 0, got %d", l.Writers)
	case uint64(l.Files)*uint64(l.Blocks) > 1<<31:
		return errors.New("--files * --blocks is too large")
	}
	return nil
}

// FileName is the base name of work file i.
func FileName(i int) string { return fmt.Sprintf("f%03d", i) }

// Path is the full path of work file i.
func (l Layout) Path(i int) string { return filepath.Join(l.Dir, FileName(i)) }

// FileSize is the byte size of every work file.
func (l Layout) FileSize() int64 { return int64(l.Blocks) * int64(l.BlockSize) }

// Owner returns the writer that owns block (file, block).
func (l Layout) Owner(file, block int) int {
	return Owner(file*l.Blocks+block, l.Writers)
}

// Owner returns the writer owning global block g among w writers.
func Owner(g, w int) int { return g % w }

// Owned returns the global block indices owned by writer id, in order.
func (l Layout) Owned(id int) []int {
	var out []int
	for g := id; g < l.Files*l.Blocks; g += l.Writers {
		out = append(out, g)
	}
	return out
}

// NewGens returns a files x blocks table filled with v.
func (l Layout) NewGens(v int64) [][]int64 {
	g := make([][]int64, l.Files)
	for i := range g {
		g[i] = make([]int64, l.Blocks)
		for j := range g[i] {
			g[i][j] = v
		}
	}
	return g
}

// Epochs splits a run into equal time slices, each with its own group of
// files, so that workers arrive at fresh files all through the run: a file
// whose first move swaps its a_ops (and keeps it swapped while cached) is
// then swapped while the writers are busy on it, not only in the first
// second of the run.
type Epochs struct {
	N        int           // 1 = one epoch with every file
	Files    int           // files in the layout
	Duration time.Duration // the run
}

// At returns the epoch of a moment elapsed into the run.
func (e Epochs) At(elapsed time.Duration) int {
	if e.N <= 1 || e.Duration <= 0 {
		return 0
	}
	return min(int(int64(elapsed)*int64(e.N)/int64(e.Duration)), e.N-1)
}

// FileRange returns the files [lo, hi) of epoch i.
func (e Epochs) FileRange(i int) (lo, hi int) {
	n := max(e.N, 1)
	return i * e.Files / n, (i + 1) * e.Files / n
}

func validateEpochs(n, files int) error {
	if n < 1 || n > files {
		return fmt.Errorf("--epochs must be in [1, files=%d], got %d", files, n)
	}
	return nil
}
