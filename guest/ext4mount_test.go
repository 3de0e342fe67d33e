package guest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// mountExt4 makes a fresh sparse ext4 image in t.TempDir(), loop-mounts
// it with the given mount options ("" = defaults) and returns the mount
// point; t.Cleanup unmounts it. It skips when not root or when mkfs.ext4,
// mount or loop devices are unavailable, so MOVE_EXT tests can run on a
// host whose temp dir is not ext4 and under mount options the host's own
// file system does not have (data=journal needs no CAP_SYS_RESOURCE,
// unlike chattr +j).
func mountExt4(t *testing.T, opts string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("loop-mounting an ext4 image needs root")
	}
	for _, tool := range []string{"mkfs.ext4", "mount", "umount"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found: %v", tool, err)
		}
	}
	base := t.TempDir()
	img, mnt := filepath.Join(base, "ext4.img"), filepath.Join(base, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(128 << 20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	mopts := "loop"
	if opts != "" {
		mopts += "," + opts
	}
	if out, err := exec.Command("mount", "-t", "ext4", "-o", mopts, img, mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot loop-mount ext4 here (mount -o %s): %v: %s", mopts, err, strings.TrimSpace(string(out)))
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

// ext4Layout is testLayout on a loop-mounted ext4 (see mountExt4).
func ext4Layout(t *testing.T, writers int, opts string) Layout {
	t.Helper()
	l := testLayout(t, writers)
	l.Dir = filepath.Join(mountExt4(t, opts), "work")
	return l
}
