package images

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
)

func TestWithPackagesKeepsTheStockKey(t *testing.T) {
	stock := DefaultRecipe()
	if got := stock.WithPackages().key(); got != stock.key() {
		t.Errorf("no extras: key %s, want the stock key %s", got, stock.key())
	}
	if got := stock.WithPackages("e2fsprogs").key(); got != stock.key() {
		t.Errorf("a package the recipe already has: key %s, want the stock key %s", got, stock.key())
	}
	fio := stock.WithPackages("fio", "fio")
	if fio.key() == stock.key() {
		t.Error("extra package fio: the image key did not change")
	}
	if n := len(fio.Packages); n != len(stock.Packages)+1 || fio.Packages[n-1] != "fio" {
		t.Errorf("packages %v: want the stock list plus fio once", fio.Packages)
	}
	if slices.Contains(DefaultRecipe().Packages, "fio") || slices.Contains(stock.Packages, "fio") {
		t.Error("WithPackages changed the recipe it was called on")
	}
}

// TestBuiltImageIsPrivate builds an image from a stand-in debootstrap (the
// real one needs the network and ~4 min; the rest of Ensure, mkfs.ext4
// included, is real) under umask 0, and checks that the image directory,
// the image holding the pinned host key, and the root login key are the
// owner's only, inside the image too; and that a cached image left
// world-readable by an older build is tightened when loaded.
func TestBuiltImageIsPrivate(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("Ensure builds only as root")
	}
	for _, tool := range []string{"mkfs.ext4", "debugfs"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found: %v", tool, err)
		}
	}
	bin := t.TempDir()
	// Keys and a login file debootstrap's openssh-server left world-readable.
	fake := `#!/bin/sh
root="$4"
mkdir -p "$root/etc/ssh" "$root/root/.ssh" "$root/sbin"
for k in ssh_host_ed25519_key ssh_host_rsa_key; do echo stale > "$root/etc/ssh/$k"; chmod 644 "$root/etc/ssh/$k"; done
echo old > "$root/root/.ssh/authorized_keys"; chmod 644 "$root/root/.ssh/authorized_keys"; chmod 755 "$root/root/.ssh"
`
	if err := os.WriteFile(filepath.Join(bin, "debootstrap"), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))
	old := syscall.Umask(0)
	defer syscall.Umask(old)

	b := &Builder{CacheDir: t.TempDir()}
	r := DefaultRecipe()
	r.SizeMB = 16
	im, err := b.Ensure(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	checkModes := func(when string) {
		t.Helper()
		for p, want := range map[string]os.FileMode{im.Dir: 0o700, im.Root: 0o600, im.KeyPath: 0o600} {
			st, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if got := st.Mode().Perm(); got != want {
				t.Errorf("%s: %s mode %04o, want %04o", when, p, got, want)
			}
		}
	}
	checkModes("fresh build")
	if _, err := im.Signer(); err != nil {
		t.Fatalf("login key: %v", err)
	}
	for p, want := range map[string]string{
		"/etc/ssh/ssh_host_ed25519_key": "0600", "/root/.ssh": "0700", "/root/.ssh/authorized_keys": "0600",
	} {
		out, err := exec.Command("debugfs", "-R", "stat "+p, im.Root).CombinedOutput()
		m := regexp.MustCompile(`Mode:\s+0?(\d{4})`).FindSubmatch(out)
		if err != nil || m == nil {
			t.Fatalf("debugfs stat %s: %v: %s", p, err, out)
		}
		if string(m[1]) != want {
			t.Errorf("in the image: %s mode %s, want %s", p, m[1], want)
		}
	}
	out, _ := exec.Command("debugfs", "-R", "ls /etc/ssh", im.Root).CombinedOutput()
	if strings.Contains(string(out), "ssh_host_rsa_key") {
		t.Errorf("stale RSA host key left in the image: %s", out)
	}

	// An image cached by an older build, world-readable: loading fixes it.
	for p, m := range map[string]os.FileMode{im.Dir: 0o755, im.Root: 0o644, im.KeyPath: 0o644} {
		if err := os.Chmod(p, m); err != nil {
			t.Fatal(err)
		}
	}
	if im, err = b.Ensure(context.Background(), r); err != nil || !im.Cached {
		t.Fatalf("second Ensure: cached %v, %v", im != nil && im.Cached, err)
	}
	checkModes("cached image")
}
