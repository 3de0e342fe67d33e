//go:build linux

package report

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"patchbay/record"
)

// TestHTMLScreenshot renders report.html and has headless Chromium take a
// screenshot of it: the page must load from a file:// URL on its own and
// draw something. PATCHBAY_SCREENSHOT_DIR keeps report.html and
// report.png there (for a person or a CI artifact) instead of a temp dir.
func TestHTMLScreenshot(t *testing.T) {
	img := screenshot(t, richSample(), "", 1280, 900)
	if n := colors(img, 16); n < 5 {
		t.Errorf("screenshot has %d distinct colors: the page did not render", n)
	}
}

// TestHTMLScreenshotEvidence renders a decide session's report: besides
// not being blank, the screenshot must show the pictures, found by colors
// only they use: the decision boundary's region (#ffebe9), the baseline's
// interval band (#ddf4ff) and the timelines' stale read-back marks
// (#cf222e, also the crash badge: counted apart below).
func TestHTMLScreenshotEvidence(t *testing.T) {
	img := screenshot(t, decideSample(t), "evidence", 1280, 2400)
	for _, c := range []struct {
		name    string
		r, g, b uint32
		min     int
	}{
		{"decision boundary region", 0xff, 0xeb, 0xe9, 200},
		{"baseline interval band", 0xdd, 0xf4, 0xff, 200},
		{"timeline strips", 0xf6, 0xf8, 0xfa, 5000},
		{"writes line", 0x09, 0x69, 0xda, 100},
	} {
		if n := countColor(img, c.r, c.g, c.b); n < c.min {
			t.Errorf("%s: %d pixels of #%02x%02x%02x in the screenshot, want >= %d", c.name, n, c.r, c.g, c.b, c.min)
		}
	}
}

// countColor counts the pixels of exactly one 8-bit color.
func countColor(img image.Image, r, g, b uint32) int {
	n := 0
	bd := img.Bounds()
	for y := bd.Min.Y; y < bd.Max.Y; y++ {
		for x := bd.Min.X; x < bd.Max.X; x++ {
			pr, pg, pb, _ := img.At(x, y).RGBA()
			if pr>>8 == r && pg>>8 == g && pb>>8 == b {
				n++
			}
		}
	}
	return n
}

// screenshot writes the summary's reports and has headless Chromium take a
// w x h screenshot of report.html (in sub of PATCHBAY_SCREENSHOT_DIR when
// set, to keep it), and returns the decoded PNG.
func screenshot(t *testing.T, s *record.Summary, sub string, w, h int) image.Image {
	t.Helper()
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("patchbay/report: chromium is not installed (apt-get install chromium); skipping the report.html screenshot")
	}
	dir := os.Getenv("PATCHBAY_SCREENSHOT_DIR")
	if dir == "" {
		dir = t.TempDir()
	} else {
		dir = filepath.Join(dir, sub)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := Write(dir, s); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "report.png")
	os.Remove(out)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromium,
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+t.TempDir(), fmt.Sprintf("--window-size=%d,%d", w, h),
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
	if b := img.Bounds(); b.Dx() != w || b.Dy() != h {
		t.Errorf("screenshot is %dx%d, want %dx%d", b.Dx(), b.Dy(), w, h)
	}
	t.Logf("screenshot: %s", out)
	return img
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
