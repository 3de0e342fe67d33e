// Package ext4test gives tests an ext4 file system of their own: a sparse
// image made with fixed mkfs options and loop-mounted in the test's temp
// dir. Tests of EXT4_IOC_MOVE_EXT and other ext4-only behaviour use it
// instead of the host's temp dir, whose file system and kernel policy vary
// (Linux 6.18 answers MOVE_EXT on its own root ext4 with EPERM).
package ext4test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// ImageSize is the size of each test file system.
const ImageSize = 128 << 20

// mke2fsConf pins the feature set and geometry, so the file system does
// not depend on the host's /etc/mke2fs.conf or on the image size (mke2fs
// would pick the "small" type, 1 KiB blocks, below 512 MiB).
const mke2fsConf = `[defaults]
	base_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr
	default_mntopts = acl,user_xattr
	enable_periodic_fsck = 0
	blocksize = 4096
	inode_size = 256
	inode_ratio = 16384

[fs_types]
	ext4 = {
		features = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize
	}
	default = {
		blocksize = 4096
	}
`

// MkfsArgs are the mkfs.ext4 arguments before the image path. Lazy init is
// off so no kernel thread writes to the file system while a test runs.
var MkfsArgs = []string{"-q", "-F", "-t", "ext4", "-T", "default", "-b", "4096",
	"-E", "lazy_itable_init=0,lazy_journal_init=0"}

// Mount makes a fresh sparse ext4 image in t.TempDir(), loop-mounts it with
// the given mount options ("" = defaults) and returns the mount point;
// t.Cleanup unmounts it. It skips, saying why, when the host cannot: not
// root, no loop device, no mkfs.ext4/mount/umount, or the mount refused.
func Mount(t testing.TB, opts string) string {
	t.Helper()
	if reason := Unavailable(); reason != "" {
		t.Skip("no loop-mounted ext4 for this test: " + reason)
	}
	base := t.TempDir()
	img, mnt, conf := filepath.Join(base, "ext4.img"), filepath.Join(base, "mnt"), filepath.Join(base, "mke2fs.conf")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, []byte(mke2fsConf), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	err = f.Truncate(ImageSize)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	mkfs := exec.Command("mkfs.ext4", append(append([]string(nil), MkfsArgs...), img)...)
	mkfs.Env = append(os.Environ(), "MKE2FS_CONFIG="+conf)
	if out, err := mkfs.CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4 %s %s: %v: %s", strings.Join(MkfsArgs, " "), img, err, out)
	}
	mopts := "loop"
	if opts != "" {
		mopts += "," + opts
	}
	if out, err := exec.Command("mount", "-t", "ext4", "-o", mopts, img, mnt).CombinedOutput(); err != nil {
		t.Skipf("no loop-mounted ext4 for this test: mount -o %s: %v: %s", mopts, err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() {
		// A just-closed file can keep the mount busy for a moment.
		var out []byte
		var err error
		for range 20 {
			if out, err = exec.Command("umount", mnt).CombinedOutput(); err == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Errorf("umount %s: %v: %s", mnt, err, out)
	})
	return mnt
}

// Unavailable says why this host cannot loop-mount an ext4 image, or "".
func Unavailable() string {
	if os.Geteuid() != 0 {
		return "loop-mounting needs root"
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		return "no loop device support: " + err.Error()
	}
	for _, tool := range []string{"mkfs.ext4", "mount", "umount"} {
		if _, err := exec.LookPath(tool); err != nil {
			return tool + " not found: " + err.Error()
		}
	}
	return ""
}
