// Package images builds the guest root file system image: a Debian minbase
// made with debootstrap, turned into an ext4 image with mkfs.ext4 -d (no loop
// mount), with an SSH host key and an authorized key generated at build time
// so the harness can pin the host key and log in without passwords.
package images

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// Recipe is everything that determines an image.
type Recipe struct {
	Suite    string   // Debian suite, e.g. bookworm
	Mirror   string   // Debian mirror URL
	Packages []string // installed on top of minbase
	SizeMB   int      // size of the ext4 image
}

// DefaultRecipe is the guest patchbay's cases run in.
func DefaultRecipe() Recipe {
	return Recipe{
		Suite:  "bookworm",
		Mirror: "http://deb.debian.org/debian",
		Packages: []string{
			"openssh-server", "e2fsprogs", "util-linux", "kmod", "procps", "iproute2",
		},
		SizeMB: 1024,
	}
}

// WithPackages returns r with extra packages installed on top of its own,
// in the order given, skipping any it already has. Without extras the
// recipe, and so the image key, is r's: only cases that ask for packages
// get an image of their own.
func (r Recipe) WithPackages(extra ...string) Recipe {
	pkgs := append([]string(nil), r.Packages...)
	for _, p := range extra {
		if !slices.Contains(pkgs, p) {
			pkgs = append(pkgs, p)
		}
	}
	r.Packages = pkgs
	return r
}

// Image is a built guest image in the cache.
type Image struct {
	Key     string `json:"key"`
	Dir     string `json:"-"`
	Root    string `json:"-"` // ext4 root file system image, to be used read-only / snapshot=on
	KeyPath string `json:"-"` // OpenSSH private key for root
	HostKey string `json:"host_key"`
	Recipe  Recipe `json:"recipe"`
	Cached  bool   `json:"-"`
}

// Signer returns the SSH identity that the image authorizes for root.
func (im *Image) Signer() (ssh.Signer, error) {
	data, err := os.ReadFile(im.KeyPath)
	if err != nil {
		return nil, fmt.Errorf("image key: %w", err)
	}
	return ssh.ParsePrivateKey(data)
}

// HostPublicKey is the guest's pinned host key.
func (im *Image) HostPublicKey() (ssh.PublicKey, error) {
	pk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(im.HostKey))
	if err != nil {
		return nil, fmt.Errorf("image host key: %w", err)
	}
	return pk, nil
}

//go:embed init.sh
var initScript string

// Builder builds images into a cache directory.
type Builder struct {
	CacheDir string
	Progress io.Writer
}

// Ensure returns the cached image for r, building it when missing (~4 min).
func (b *Builder) Ensure(ctx context.Context, r Recipe) (*Image, error) {
	key := r.key()
	dir := filepath.Join(b.CacheDir, "images", key)
	if im, err := load(dir); err == nil {
		im.Cached = true
		return im, nil
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("guest image %s is not cached and building it needs root (debootstrap): run as root or ci/setup.sh", key)
	}
	if _, err := exec.LookPath("debootstrap"); err != nil {
		return nil, fmt.Errorf("guest image: debootstrap not installed (run ci/setup.sh)")
	}
	start := time.Now()
	b.step(start, "building guest image %s (debootstrap %s, ~4 min)", key, r.Suite)
	// Per-process temp dir: two patchbays building at once each finish, and
	// the second rename loses to the first (a complete image either way).
	tmp := fmt.Sprintf("%s.tmp-%d", dir, os.Getpid())
	if err := os.RemoveAll(tmp); err != nil {
		return nil, err
	}
	// 0700: the image holds the guest's SSH host key, the directory the
	// private key that logs in as root.
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	rootfs := filepath.Join(tmp, "rootfs")
	args := []string{"--variant=minbase", "--include=" + strings.Join(r.Packages, ","), r.Suite, rootfs, r.Mirror}
	if err := runLogged(ctx, filepath.Join(tmp, "debootstrap.log"), "debootstrap", args...); err != nil {
		return nil, fmt.Errorf("guest image: %w", err)
	}
	b.step(start, "configuring guest image")
	hostPub, err := customize(rootfs, tmp)
	if err != nil {
		return nil, fmt.Errorf("guest image: %w", err)
	}
	b.step(start, "mkfs.ext4 -d")
	img := filepath.Join(tmp, "root.img")
	if err := runLogged(ctx, filepath.Join(tmp, "mkfs.log"), "mkfs.ext4", "-q", "-F", "-L", "pbroot", "-d", rootfs, img, fmt.Sprintf("%dM", r.SizeMB)); err != nil {
		return nil, fmt.Errorf("guest image: %w", err)
	}
	if err := os.RemoveAll(rootfs); err != nil {
		return nil, err
	}
	if err := secure(tmp); err != nil {
		return nil, fmt.Errorf("guest image: %w", err)
	}
	im := &Image{Key: key, HostKey: hostPub, Recipe: r}
	data, err := json.MarshalIndent(im, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(tmp, "image.json"), data, 0o644); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, dir); err != nil {
		if im, lerr := load(dir); lerr == nil {
			return im, nil
		}
		// A damaged leftover (files deleted by hand): replace it.
		os.RemoveAll(dir)
		if err := os.Rename(tmp, dir); err != nil {
			return nil, fmt.Errorf("guest image: %w", err)
		}
	}
	b.step(start, "guest image ready")
	return load(dir)
}

func (b *Builder) step(start time.Time, format string, args ...any) {
	if b.Progress != nil {
		fmt.Fprintf(b.Progress, "[image +%s] %s\n", time.Since(start).Round(time.Second), fmt.Sprintf(format, args...))
	}
}

func load(dir string) (*Image, error) {
	data, err := os.ReadFile(filepath.Join(dir, "image.json"))
	if err != nil {
		return nil, err
	}
	var im Image
	if err := json.Unmarshal(data, &im); err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	im.Dir = dir
	im.Root = filepath.Join(dir, "root.img")
	im.KeyPath = filepath.Join(dir, "id_ed25519")
	for _, p := range []string{im.Root, im.KeyPath} {
		if _, err := os.Stat(p); err != nil {
			return nil, err
		}
	}
	// Images cached before the modes were tightened were world-readable.
	if err := secure(dir); err != nil {
		return nil, err
	}
	return &im, nil
}

// Modes of a built image: its directory, the ext4 image (it holds the host
// key patchbay pins) and the root login key are readable by the owner only.
const (
	dirMode    os.FileMode = 0o700
	secretMode os.FileMode = 0o600
)

// secure sets those modes on an image directory (umask and mkfs.ext4
// decide them otherwise).
func secure(dir string) error {
	if err := os.Chmod(dir, dirMode); err != nil {
		return err
	}
	for _, name := range []string{"root.img", "id_ed25519"} {
		if err := os.Chmod(filepath.Join(dir, name), secretMode); err != nil {
			return err
		}
	}
	return nil
}

// key changes with the recipe and with the init script and configuration
// that customize writes.
func (r Recipe) key() string {
	h := sha256.New()
	fmt.Fprintf(h, "image-v1\x00%s\x00%s\x00%s\x00%d\x00%s\x00%s", r.Suite, r.Mirror,
		strings.Join(r.Packages, ","), r.SizeMB, initScript, sshdConfig)
	return hex.EncodeToString(h.Sum(nil))[:20]
}

// No PAM, DNS, motd or lastlog: each costs a noticeable time per login
// under TCG, and the harness logs in many times per run.
const sshdConfig = `PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
UseDNS no
PrintMotd no
PrintLastLog no
`

// customize installs init, sshd configuration and keys into rootfs, and
// writes the harness's private key next to it. It returns the host public key
// in authorized_keys form.
func customize(rootfs, outDir string) (string, error) {
	write := func(rel, content string, mode os.FileMode) error {
		p := filepath.Join(rootfs, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			return err
		}
		// WriteFile keeps the mode of a file that exists and obeys umask.
		return os.Chmod(p, mode)
	}
	hostPub, hostPEM, err := newKey("patchbay-guest")
	if err != nil {
		return "", err
	}
	userPub, userPEM, err := newKey("patchbay")
	if err != nil {
		return "", err
	}
	// Only our host key: sshd would otherwise fail on the missing RSA/ECDSA ones.
	for _, name := range []string{"ssh_host_rsa_key", "ssh_host_ecdsa_key", "ssh_host_ed25519_key"} {
		os.Remove(filepath.Join(rootfs, "etc/ssh", name))
		os.Remove(filepath.Join(rootfs, "etc/ssh", name+".pub"))
	}
	files := []struct {
		rel, content string
		mode         os.FileMode
	}{
		{"etc/ssh/ssh_host_ed25519_key", hostPEM, 0o600},
		{"etc/ssh/ssh_host_ed25519_key.pub", hostPub, 0o644},
		{"etc/ssh/sshd_config.d/patchbay.conf", sshdConfig + "HostKey /etc/ssh/ssh_host_ed25519_key\n", 0o644},
		{"root/.ssh/authorized_keys", userPub, 0o600},
		{"sbin/patchbay-init", initScript, 0o755},
		{"etc/hostname", "patchbay\n", 0o644},
		{"etc/hosts", "127.0.0.1 localhost patchbay\n", 0o644},
		{"etc/fstab", "", 0o644},
	}
	for _, f := range files {
		if err := write(f.rel, f.content, f.mode); err != nil {
			return "", err
		}
	}
	if err := os.Chmod(filepath.Join(rootfs, "root/.ssh"), 0o700); err != nil {
		return "", err
	}
	// e4defrag and mount read /etc/mtab.
	os.Remove(filepath.Join(rootfs, "etc/mtab"))
	if err := os.Symlink("/proc/self/mounts", filepath.Join(rootfs, "etc/mtab")); err != nil {
		return "", err
	}
	for _, dir := range []string{"usr/share/doc", "usr/share/man", "usr/share/locale", "var/cache/apt/archives", "var/lib/apt/lists"} {
		p := filepath.Join(rootfs, dir)
		entries, _ := os.ReadDir(p)
		for _, e := range entries {
			os.RemoveAll(filepath.Join(p, e.Name()))
		}
	}
	if err := os.WriteFile(filepath.Join(outDir, "id_ed25519"), []byte(userPEM), secretMode); err != nil {
		return "", err
	}
	if err := os.Chmod(filepath.Join(outDir, "id_ed25519"), secretMode); err != nil {
		return "", err
	}
	return strings.TrimSpace(hostPub), nil
}

// newKey makes an ed25519 key pair: authorized_keys line and OpenSSH PEM.
func newKey(comment string) (string, string, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", "", err
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return "", "", err
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return "", "", err
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshPub))) + " " + comment + "\n"
	return line, string(pem.EncodeToMemory(block)), nil
}

func runLogged(ctx context.Context, logPath, name string, args ...string) error {
	f, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer f.Close()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Run(); err != nil {
		data, _ := os.ReadFile(logPath)
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		if len(lines) > 15 {
			lines = lines[len(lines)-15:]
		}
		return fmt.Errorf("%s: %w\n  | %s", name, err, strings.Join(lines, "\n  | "))
	}
	return nil
}
