package harness

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"patchbay/images"
	"patchbay/kernel"
	"patchbay/vm"
)

// TestCaptureLKDTM boots the shipped case's stock kernel once per LKDTM crash
// type, provokes it, and saves the console under triage/testdata/real/raw/.
// Those captures become triage fixtures once a person has read them and
// written their TITLE/KIND headers. Run with PATCHBAY_CAPTURE=1.
func TestCaptureLKDTM(t *testing.T) {
	if os.Getenv("PATCHBAY_CAPTURE") == "" {
		t.Skip("set PATCHBAY_CAPTURE=1 to (re)capture real console logs for triage fixtures")
	}
	c, err := LoadCase("../cases/ext4-journal-defrag")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cache := DefaultCacheDir()
	src, _ := kernel.ParseSource(c.Kernel.Source)
	var frags []string
	for _, f := range c.Kernel.Fragments {
		frags = append(frags, c.Path(f))
	}
	k, err := (&kernel.Builder{CacheDir: cache}).Build(ctx, kernel.Spec{Name: "capture", Source: src, Fragments: frags})
	if err != nil {
		t.Fatal(err)
	}
	img, err := (&images.Builder{CacheDir: cache}).Ensure(ctx, images.DefaultRecipe())
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := img.Signer()
	hostKey, _ := img.HostPublicKey()
	out := "../triage/testdata/real/raw"
	os.MkdirAll(out, 0o755)
	// Short detector timeouts so hangs show up within the capture window.
	cmdline := "sysctl.kernel.hung_task_timeout_secs=5 watchdog_thresh=3"
	types := []struct {
		name    string
		cmdline string
		wait    time.Duration
	}{
		{"WARNING", "", 5 * time.Second},
		{"BUG", "", 5 * time.Second},
		{"EXCEPTION", "", 5 * time.Second},
		{"CORRUPT_LIST_ADD", "", 5 * time.Second},
		{"HUNG_TASK", "", 25 * time.Second},
		{"SOFTLOCKUP", "", 25 * time.Second},
		{"EXCEPTION", "oops=panic", 5 * time.Second},
		{"UNSET_SMEP", "", 5 * time.Second},
	}
	for _, tt := range types {
		name := tt.name
		if tt.cmdline != "" {
			name += "-panic"
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			m, err := vm.Start(ctx, vm.Config{
				Kernel: k.BzImage, Cmdline: cmdline + " " + tt.cmdline, RootImage: img.Root,
				MemoryMB: 512, CPUs: 2, Accel: "tcg", WorkDir: dir, Signer: signer, HostKey: hostKey,
			})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			bctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			defer cancel()
			if err := m.WaitReady(bctx); err != nil {
				t.Fatal(err)
			}
			// The write never returns for most types: do not wait for it.
			go m.Output(ctx, fmt.Sprintf("echo %s > /sys/kernel/debug/provoke-crash/DIRECT", tt.name))
			select {
			case <-m.Exited():
			case <-time.After(tt.wait):
			}
			time.Sleep(2 * time.Second)
			m.Close()
			console := m.Console()
			if !bytes.Contains(console, []byte("lkdtm")) {
				t.Errorf("console has no lkdtm output")
			}
			if err := os.WriteFile(filepath.Join(out, "lkdtm-"+name+".txt"), console, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: %d bytes, QMP events %v, panicked %v", name, len(console), m.Events(), m.Panicked())
		})
	}
}
