package kernel

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"
)

// A variant tree is a copy-on-write view of the base tree, cheap to make
// and to remove:
//   - the source is a farm of symlinks into the base tree, one per top-level
//     entry; a directory on the path of a file a patch touches becomes a real
//     directory of symlinks, and the touched file a real copy, so patch(1)
//     never writes into the base (see materialize);
//   - out/ is a real copy of the base objects with their mtimes, so make
//     recompiles only what the patches changed. The link products, which any
//     change rebuilds anyway, are not copied (linkProduct);
//   - the few .cmd files that record absolute paths of the base's out/ (the
//     objtool build in tools/) are rewritten to the variant's out/, else make
//     rebuilds objtool and then every object.
//
// kbuild reads the farm through ".." (srctree) and never writes to the
// source with O=out; tools/objtool is entered with make -C, which resolves
// the symlink, so its sources stay at their base paths.

// makeFarm creates tree as a directory of symlinks to base's entries, all
// but out/.
func makeFarm(base, tree string) error {
	if err := os.Mkdir(tree, 0o755); err != nil {
		return err
	}
	entries, err := os.ReadDir(base)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Name() == "out" {
			continue
		}
		if err := os.Symlink(filepath.Join(base, e.Name()), filepath.Join(tree, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// materialize makes rel writable in the farm without touching the base:
// each directory on its path that is still a link into the base becomes a
// real directory of links, and the file itself a real copy (mtime kept, so
// a file that is not changed after all does not recompile).
func materialize(tree, base, rel string) error {
	rel = filepath.Clean(rel)
	if rel == "." || filepath.IsAbs(rel) || rel == ".." || strings.HasPrefix(rel, "../") {
		return fmt.Errorf("path %q is outside the tree", rel)
	}
	parts := strings.Split(rel, string(filepath.Separator))
	cur, curBase := tree, base
	for i, part := range parts {
		p, pb := filepath.Join(cur, part), filepath.Join(curBase, part)
		fi, err := os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil // new: patch(1) creates it inside a real directory
		}
		if err != nil {
			return err
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			if target, err := os.Readlink(p); err == nil && target == pb {
				st, err := os.Stat(pb)
				if err != nil {
					return err
				}
				switch {
				case st.IsDir():
					if err := expandDir(p, pb, st.Mode().Perm()); err != nil {
						return err
					}
				case i == len(parts)-1 && st.Mode().IsRegular():
					if err := copyReplacing(pb, p, st); err != nil {
						return err
					}
				}
			}
		}
		cur, curBase = p, pb
	}
	return nil
}

func expandDir(link, target string, perm fs.FileMode) error {
	entries, err := os.ReadDir(target)
	if err != nil {
		return err
	}
	if err := os.Remove(link); err != nil {
		return err
	}
	if err := os.Mkdir(link, perm); err != nil {
		return err
	}
	for _, e := range entries {
		if err := os.Symlink(filepath.Join(target, e.Name()), filepath.Join(link, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// copyReplacing replaces dst (a link) by a copy of src with its mode and mtime.
func copyReplacing(src, dst string, st fs.FileInfo) error {
	tmp := dst + ".pbtmp"
	if err := copyFileMode(src, tmp, st.Mode().Perm()); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Chtimes(tmp, st.ModTime(), st.ModTime()); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, dst)
}

// linkProduct matches the objects (relative to out/) that the final link
// rewrites whenever any object changes: not worth copying, and make
// rebuilds them when they are missing.
var linkProduct = regexp.MustCompile(`^(vmlinux|vmlinux\.o|\.tmp_vmlinux.*|arch/x86/boot/(bzImage|vmlinux\.bin|compressed/(vmlinux|vmlinux\.bin.*|piggy\.o)))$`)

// objectsSize is what copying from's objects needs on disk, link products
// included (the build writes them again).
func objectsSize(from string) (int64, error) {
	var total int64
	err := filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				total += fi.Size()
			}
		}
		return nil
	})
	return total, err
}

// copyObjects copies the base's out/ to to, keeping modes and mtimes, with
// a few parallel copiers (copy_file_range does the work in the kernel).
// With skipLink the link products are left out.
func copyObjects(ctx context.Context, from, to string, skipLink bool) error {
	type job struct {
		src, dst string
		info     fs.FileInfo
	}
	jobs := make(chan job, 256)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
	}
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				if err := copyFileMode(j.src, j.dst, j.info.Mode().Perm()); err != nil {
					fail(err)
					continue
				}
				if err := os.Chtimes(j.dst, j.info.ModTime(), j.info.ModTime()); err != nil {
					fail(err)
				}
			}
		}()
	}
	var dirs []job
	walkErr := filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		mu.Lock()
		stop := firstErr
		mu.Unlock()
		if stop != nil {
			return stop
		}
		rel, _ := filepath.Rel(from, p)
		dst := filepath.Join(to, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			dirs = append(dirs, job{p, dst, info})
			return os.Mkdir(dst, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(target, dst)
		case d.Type().IsRegular():
			if skipLink && linkProduct.MatchString(rel) {
				return nil
			}
			jobs <- job{p, dst, info}
		}
		return nil
	})
	close(jobs)
	wg.Wait()
	if walkErr != nil {
		return walkErr
	}
	if firstErr != nil {
		return firstErr
	}
	for i := len(dirs) - 1; i >= 0; i-- { // modes and mtimes of directories last
		d := dirs[i]
		if err := os.Chmod(d.dst, d.info.Mode().Perm()); err != nil {
			return err
		}
		if err := os.Chtimes(d.dst, d.info.ModTime(), d.info.ModTime()); err != nil {
			return err
		}
	}
	return nil
}

// relocateCmds rewrites from to to in the .cmd files under out that
// mention it (kbuild compares recorded commands; tools/ records absolute
// paths), keeping their mtimes.
func relocateCmds(out, from, to string) error {
	old, repl := []byte(from), []byte(to)
	return filepath.WalkDir(out, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if !d.Type().IsRegular() || !strings.HasPrefix(name, ".") || !strings.HasSuffix(name, ".cmd") {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if !bytes.Contains(data, old) {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if err := os.WriteFile(p, bytes.ReplaceAll(data, old, repl), info.Mode().Perm()); err != nil {
			return err
		}
		return os.Chtimes(p, info.ModTime(), info.ModTime())
	})
}

// breakLink replaces a hard-linked file by its own copy, so that touching
// or writing it does not reach the other links.
func breakLink(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	return copyReplacing(path, path, st)
}

func copyFileMode(from, to string, perm fs.FileMode) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// freeBytes is the space available to us on the filesystem holding path
// (or its nearest existing parent).
func freeBytes(path string) (int64, error) {
	for {
		var st syscall.Statfs_t
		err := syscall.Statfs(path, &st)
		if err == nil {
			return int64(st.Bavail) * int64(st.Bsize), nil
		}
		parent := filepath.Dir(path)
		if !errors.Is(err, syscall.ENOENT) || parent == path {
			return 0, err
		}
		path = parent
	}
}

// touchTime sets path's mtime to now, creating it empty if needed.
func touchTime(path string) error {
	now := time.Now()
	if err := os.Chtimes(path, now, now); err == nil {
		return nil
	}
	return touch(path)
}
