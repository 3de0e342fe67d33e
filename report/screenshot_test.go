//go:build linux

package report

import (
	"bytes"
	"context"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestHTMLScreenshot renders report.html and has headless Chromium take a
// screenshot of it: the page must load from a file:// URL on its own and
// draw something. PATCHBAY_SCREENSHOT_DIR keeps report.html and
// report.png there (for a person or a CI artifact) instead of a temp dir.
func TestHTMLScreenshot(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("patchbay/report: chromium is not installed (apt-get install chromium); skipping the report.html screenshot")
	}
	dir := os.Getenv("PATCHBAY_SCREENSHOT_DIR")
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := Write(dir, richSample()); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "report.png")
	os.Remove(out)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromium,
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+t.TempDir(), "--window-size=1280,900",
		"--screenshot="+out, "file://"+filepath.Join(dir, "report.html"))
	// Chromium forks helpers: on a timeout, kill the whole process group.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium: %v\n%s", err, log.String())
	}

	st, err := os.Stat(out)
	if err != nil {
		t.Fatalf("no screenshot: %v\n%s", err, log.String())
	}
	if st.Size() < 10<<10 {
		t.Errorf("screenshot is %d bytes: too small to show the report", st.Size())
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot is not a PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() != 1280 || b.Dy() != 900 {
		t.Errorf("screenshot is %dx%d, want 1280x900", b.Dx(), b.Dy())
	}
	if n := colors(img, 16); n < 5 {
		t.Errorf("screenshot has %d distinct colors: the page did not render", n)
	}
	t.Logf("screenshot: %s", out)
}

// colors counts distinct colors, stopping once it has seen limit of them.
func colors(img image.Image, limit int) int {
	seen := map[[4]uint32]bool{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, a := img.At(x, y).RGBA()
			seen[[4]uint32{r, g, bl, a}] = true
			if len(seen) >= limit {
				return len(seen)
			}
		}
	}
	return len(seen)
}
