// Package kernel turns a kernel source, a patch stack and kconfig fragments
// into a bootable bzImage, cached by content outside the repository.
package kernel

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"patchbay/safefile"
)

// Source names where the kernel tree comes from.
//
//	debian:linux-source-6.12   the tarball of Debian's linux-source package
//	dir:/path/to/linux         a local git work tree, used as it is (dirty state included)
//	git:/path/to/linux@v6.12   a commit of a local git repository (branch, tag or id)
type Source struct {
	Kind string // "debian", "dir" or "git"
	Name string // package name for debian, path for dir and git
	Ref  string // git only: the ref as written; a commit id once resolved
}

const sourceForms = "debian:linux-source-N, dir:PATH or git:PATH@REF"

// ParseSource parses the "kind:value" form used in case files.
func ParseSource(s string) (Source, error) {
	kind, val, ok := strings.Cut(s, ":")
	if !ok || val == "" {
		return Source{}, fmt.Errorf("kernel source %q: want %s", s, sourceForms)
	}
	src := Source{Kind: kind, Name: val}
	switch kind {
	case "debian":
		if !strings.HasPrefix(val, "linux-source-") {
			return Source{}, fmt.Errorf("kernel source %q: Debian package must be linux-source-N", s)
		}
		return src, nil
	case "dir":
	case "git":
		i := strings.LastIndex(val, "@")
		if i <= 0 || i == len(val)-1 {
			return Source{}, fmt.Errorf("kernel source %q: want git:PATH@REF (a local repository and a branch, tag or commit)", s)
		}
		src.Name, src.Ref = val[:i], val[i+1:]
		if err := CheckRevision(src.Ref); err != nil {
			return Source{}, fmt.Errorf("kernel source %q: %w", s, err)
		}
	default:
		return Source{}, fmt.Errorf("kernel source %q: unknown kind %q (want %s)", s, kind, sourceForms)
	}
	abs, err := filepath.Abs(src.Name)
	if err != nil {
		return Source{}, fmt.Errorf("kernel source %q: %w", s, err)
	}
	src.Name = abs
	return src, nil
}

func (s Source) String() string {
	if s.Kind == "git" {
		return s.Kind + ":" + s.Name + "@" + s.Ref
	}
	return s.Kind + ":" + s.Name
}

// resolve pins the source and returns a string that changes whenever its
// content can have changed: the package version for Debian; HEAD, the diff
// and the untracked files for a dir; the commit id for git. The pinned
// source (a git ref resolved to its commit) is what unpack must use.
func (s Source) resolve(ctx context.Context) (Source, string, error) {
	switch s.Kind {
	case "debian":
		out, err := exec.CommandContext(ctx, "dpkg-query", "-W", "-f=${Version}", s.Name).Output()
		if err != nil || len(out) == 0 {
			return s, "", fmt.Errorf("kernel source %s: package not installed (apt-get install %s, or run ci/setup.sh)", s, s.Name)
		}
		return s, s.String() + "=" + string(out), nil
	case "dir":
		id, err := s.dirIdentity(ctx)
		return s, id, err
	case "git":
		if _, err := gitOutput(ctx, s.Name, "rev-parse", "--git-dir"); err != nil {
			return s, "", fmt.Errorf("kernel source %s: %s is not a git repository: %w", s, s.Name, err)
		}
		id, err := resolveCommit(ctx, s.Name, s.Ref)
		if err != nil {
			return s, "", fmt.Errorf("kernel source %s: %w", s, err)
		}
		pinned := s
		pinned.Ref = id
		if _, err := gitOutput(ctx, s.Name, "cat-file", "-e", "--end-of-options", pinned.Ref+":Makefile"); err != nil {
			return s, "", fmt.Errorf("kernel source %s: commit %s has no top-level Makefile: not a kernel tree", s, pinned.Ref[:12])
		}
		// The commit alone names the content, wherever the repository is.
		return pinned, "git:" + pinned.Ref, nil
	}
	return s, "", fmt.Errorf("kernel source %s: unknown kind %q (want %s)", s, s.Kind, sourceForms)
}

// dirIdentity keys a work tree by HEAD, the diff against it and the content
// of every untracked, not ignored file: the dirty state in full.
func (s Source) dirIdentity(ctx context.Context) (string, error) {
	if _, err := os.Stat(filepath.Join(s.Name, "Makefile")); err != nil {
		return "", fmt.Errorf("kernel source %s: not a kernel tree: %w", s, err)
	}
	head, err := gitOutput(ctx, s.Name, "rev-parse", "HEAD")
	if err != nil {
		return "", fmt.Errorf("kernel source %s: a dir source must be a git work tree so its state can be keyed: %w", s, err)
	}
	diff, err := gitOutput(ctx, s.Name, "diff", "--binary", "HEAD")
	if err != nil {
		return "", fmt.Errorf("kernel source %s: git diff: %w", s, err)
	}
	others, err := gitOutput(ctx, s.Name, "ls-files", "-z", "--others", "--exclude-standard")
	if err != nil {
		return "", fmt.Errorf("kernel source %s: git ls-files: %w", s, err)
	}
	state := hashBytes(diff)
	if names := splitNUL(others); len(names) > 0 {
		h := sha256.New()
		h.Write(diff)
		h.Write([]byte("\x00untracked\x00"))
		for _, name := range names {
			p := filepath.Join(s.Name, name)
			fi, err := os.Lstat(p)
			if err != nil {
				return "", fmt.Errorf("kernel source %s: untracked file: %w", s, err)
			}
			var data []byte
			if fi.Mode()&os.ModeSymlink != 0 {
				target, err := os.Readlink(p)
				if err != nil {
					return "", fmt.Errorf("kernel source %s: untracked file: %w", s, err)
				}
				data = []byte("symlink:" + target)
			} else if data, err = safefile.ReadFile(p, safefile.PatchCap); err != nil {
				return "", fmt.Errorf("kernel source %s: untracked file: %w", s, err)
			}
			fmt.Fprintf(h, "%s\x00%o\x00%d\x00", name, fi.Mode().Perm(), len(data))
			h.Write(data)
		}
		state = hex.EncodeToString(h.Sum(nil))
	}
	return s.String() + "@" + strings.TrimSpace(string(head)) + "+" + state, nil
}

// tarball is where Debian's linux-source-N package puts its tree.
func (s Source) tarball() string {
	return filepath.Join("/usr/src", s.Name+".tar.xz")
}

// size estimates the bytes an unpacked copy needs; 0 when unknown.
func (s Source) size(ctx context.Context) int64 {
	switch s.Kind {
	case "debian":
		out, err := exec.CommandContext(ctx, "xz", "--robot", "--list", s.tarball()).Output()
		if err != nil {
			return 0
		}
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			if f := strings.Split(sc.Text(), "\t"); len(f) > 4 && f[0] == "totals" {
				n, _ := strconv.ParseInt(f[4], 10, 64)
				return n
			}
		}
	case "git":
		out, err := gitOutput(ctx, s.Name, "ls-tree", "-r", "-l", "--end-of-options", s.Ref)
		if err != nil {
			return 0
		}
		var total int64
		for _, line := range strings.Split(string(out), "\n") {
			if f := strings.Fields(line); len(f) >= 5 {
				n, _ := strconv.ParseInt(f[3], 10, 64)
				total += n + 4096/2 // average block slack per file
			}
		}
		return total
	}
	return 0
}

// unpack makes a pristine copy of the source tree at dst, atomically: dst
// appears complete or not at all, and a failure leaves nothing behind.
func (s Source) unpack(ctx context.Context, dst string, log *stepLog) error {
	if _, err := os.Stat(filepath.Join(dst, "Makefile")); err == nil {
		return nil
	}
	tmp := dst + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("unpack %s: %w", s, err)
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return fmt.Errorf("unpack %s: %w", s, err)
	}
	if err := s.unpackInto(ctx, tmp, log); err != nil {
		os.RemoveAll(tmp)
		return err
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("unpack %s: %w", s, err)
	}
	return nil
}

func (s Source) unpackInto(ctx context.Context, tmp string, log *stepLog) error {
	switch s.Kind {
	case "debian":
		log.step("unpacking %s", s.tarball())
		// The tarball holds one top directory (linux-source-6.12/).
		if err := run(ctx, tmp, nil, "tar", "-xf", s.tarball(), "--strip-components=1"); err != nil {
			return fmt.Errorf("unpack %s: %w", s.tarball(), err)
		}
	case "git":
		log.step("extracting %s", s)
		if err := CheckRevision(s.Ref); err != nil {
			return fmt.Errorf("unpack %s: %w", s, err)
		}
		archive := exec.CommandContext(ctx, "git", "-C", s.Name, "archive", "--format=tar", "--end-of-options", s.Ref)
		untar := exec.CommandContext(ctx, "tar", "-x", "-C", tmp)
		if err := pipe(archive, untar); err != nil {
			return fmt.Errorf("unpack %s: %w", s, err)
		}
	case "dir":
		// Exactly the files the identity covers: tracked (as they are now)
		// and untracked-but-not-ignored. Build outputs of an in-place build
		// and .git stay behind.
		log.step("copying %s", s.Name)
		out, err := gitOutput(ctx, s.Name, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
		if err != nil {
			return fmt.Errorf("unpack %s: git ls-files: %w", s, err)
		}
		var list bytes.Buffer
		for _, name := range splitNUL(out) {
			if _, err := os.Lstat(filepath.Join(s.Name, name)); err == nil { // deleted files are listed too
				list.WriteString(name)
				list.WriteByte(0)
			}
		}
		pack := exec.CommandContext(ctx, "tar", "-C", s.Name, "-c", "--null", "--no-recursion", "-T", "-", "-f", "-")
		pack.Stdin = &list
		untar := exec.CommandContext(ctx, "tar", "-x", "-C", tmp, "-f", "-")
		if err := pipe(pack, untar); err != nil {
			return fmt.Errorf("unpack %s: %w", s, err)
		}
	default:
		return fmt.Errorf("unpack %s: unknown kind %q", s, s.Kind)
	}
	return nil
}

// pipe runs from | to and reports the first failure with its stderr.
func pipe(from, to *exec.Cmd) error {
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	var fromErr, toErr bytes.Buffer
	from.Stdout, from.Stderr = w, &fromErr
	to.Stdin, to.Stdout, to.Stderr = r, &toErr, &toErr
	if err := to.Start(); err != nil {
		r.Close()
		w.Close()
		return fmt.Errorf("%s: %w", to.Path, err)
	}
	r.Close()
	startErr := from.Start()
	w.Close()
	var e1 error
	if startErr != nil {
		e1 = startErr
	} else {
		e1 = from.Wait()
	}
	e2 := to.Wait()
	if e2 != nil {
		return fmt.Errorf("%s: %w\n%s", strings.Join(to.Args, " "), e2, tail(toErr.Bytes(), 10))
	}
	if e1 != nil {
		return fmt.Errorf("%s: %w\n%s", strings.Join(from.Args, " "), e1, tail(fromErr.Bytes(), 10))
	}
	return nil
}

func gitOutput(ctx context.Context, dir string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "git", append([]string{"-C", dir}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return nil, fmt.Errorf("git %s: %s", args[0], msg)
		}
		return nil, fmt.Errorf("git %s: %w", args[0], err)
	}
	return out, nil
}

func splitNUL(b []byte) []string {
	var out []string
	for _, f := range bytes.Split(b, []byte{0}) {
		if len(f) > 0 {
			out = append(out, string(f))
		}
	}
	return out
}
