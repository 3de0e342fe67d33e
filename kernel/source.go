// Package kernel turns a kernel source, a patch stack and kconfig fragments
// into a bootable bzImage, cached by content outside the repository.
package kernel

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Source names where the kernel tree comes from.
//
//	debian:linux-source-6.12   the tarball of Debian's linux-source package
//	dir:/path/to/linux         a local tree, used as it is (dirty state included)
type Source struct {
	Kind string // "debian" or "dir"
	Name string // package name for debian, path for dir
}

// ParseSource parses the "kind:value" form used in case files.
func ParseSource(s string) (Source, error) {
	kind, val, ok := strings.Cut(s, ":")
	if !ok || val == "" {
		return Source{}, fmt.Errorf("kernel source %q: want debian:PACKAGE or dir:PATH", s)
	}
	switch kind {
	case "debian":
		if !strings.HasPrefix(val, "linux-source-") {
			return Source{}, fmt.Errorf("kernel source %q: Debian package must be linux-source-N", s)
		}
	case "dir":
		if !filepath.IsAbs(val) {
			abs, err := filepath.Abs(val)
			if err != nil {
				return Source{}, fmt.Errorf("kernel source %q: %w", s, err)
			}
			val = abs
		}
	default:
		return Source{}, fmt.Errorf("kernel source %q: unknown kind %q (want debian or dir)", s, kind)
	}
	return Source{Kind: kind, Name: val}, nil
}

func (s Source) String() string { return s.Kind + ":" + s.Name }

// identity returns a string that changes whenever the source's content can
// have changed: the package version for Debian, HEAD plus the diff for a git
// tree, or the path for a plain tree (callers must not cache those blindly).
func (s Source) identity(ctx context.Context) (string, error) {
	switch s.Kind {
	case "debian":
		out, err := exec.CommandContext(ctx, "dpkg-query", "-W", "-f=${Version}", s.Name).Output()
		if err != nil || len(out) == 0 {
			return "", fmt.Errorf("kernel source %s: package not installed (apt-get install %s, or run ci/setup.sh)", s, s.Name)
		}
		return s.String() + "=" + string(out), nil
	case "dir":
		if _, err := os.Stat(filepath.Join(s.Name, "Makefile")); err != nil {
			return "", fmt.Errorf("kernel source %s: not a kernel tree: %w", s, err)
		}
		head, err := exec.CommandContext(ctx, "git", "-C", s.Name, "rev-parse", "HEAD").Output()
		if err != nil {
			return "", fmt.Errorf("kernel source %s: a dir source must be a git work tree so its state can be keyed: %w", s, err)
		}
		diff, err := exec.CommandContext(ctx, "git", "-C", s.Name, "diff", "HEAD").Output()
		if err != nil {
			return "", fmt.Errorf("kernel source %s: git diff: %w", s, err)
		}
		return s.String() + "@" + strings.TrimSpace(string(head)) + "+" + hashBytes(diff), nil
	}
	return "", fmt.Errorf("kernel source %s: unknown kind", s)
}

// tarball is where Debian's linux-source-N package puts its tree.
func (s Source) tarball() string {
	return filepath.Join("/usr/src", s.Name+".tar.xz")
}

// unpack makes a pristine copy of the source tree at dst (atomically: dst
// appears complete or not at all).
func (s Source) unpack(ctx context.Context, dst string, log *stepLog) error {
	if _, err := os.Stat(filepath.Join(dst, "Makefile")); err == nil {
		return nil
	}
	tmp := dst + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return err
	}
	switch s.Kind {
	case "debian":
		log.step("unpacking %s", s.tarball())
		// The tarball holds one top directory (linux-source-6.12/).
		if err := run(ctx, tmp, nil, "tar", "-xf", s.tarball(), "--strip-components=1"); err != nil {
			return fmt.Errorf("unpack %s: %w", s.tarball(), err)
		}
	case "dir":
		log.step("copying %s", s.Name)
		if err := run(ctx, "", nil, "cp", "-a", s.Name+"/.", tmp); err != nil {
			return fmt.Errorf("copy %s: %w", s.Name, err)
		}
		// A tree the user built in place would make O= builds refuse to run.
		_ = run(ctx, tmp, nil, "make", "-s", "mrproper")
	}
	return os.Rename(tmp, dst)
}
