package harness

import (
	"context"
	"io"
	"os"
	"time"
)

// Sh, Save, SaveJSON and Upload let the workload packages (workload/fio,
// workload/iomapcheck) drive a run's guest without importing vm.

// Sh runs cmd in the guest (see sh).
func (g *guest) Sh(ctx context.Context, timeout time.Duration, save, cmd string) ([]byte, error) {
	return g.sh(ctx, timeout, save, cmd)
}

// Save writes evidence into the run directory (see save).
func (g *guest) Save(name string, data []byte) error { return g.save(name, data) }

// SaveJSON writes v as indented JSON evidence.
func (g *guest) SaveJSON(name string, v any) error { return g.saveJSON(name, v) }

// Upload copies data to path in the guest.
func (g *guest) Upload(ctx context.Context, data io.Reader, path string, mode os.FileMode) error {
	return g.m.Upload(ctx, data, path, mode)
}
