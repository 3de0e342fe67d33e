package kernel

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// CacheEntry is one thing in the cache.
type CacheEntry struct {
	Kind     string    // kernel, tree, src, snapshot, log, leftover
	Key      string    // directory or file name
	Path     string    //
	Size     int64     // bytes on disk not shared with entries listed before it
	LastUsed time.Time // the last-used mark, else the newest mark of a build
	InUse    bool      // its lock is held right now

	// Kernels.
	Release string
	Variant string
	Source  string
	Patches []string // the applied stack ("name: subject"), else the patch paths
	// Snapshots: the kernel it holds (Release is filled from the cache).
	KernelKey string
	// Trees: which src/ entry they link to ("" when not recorded).
	SrcDir string
	State  string // built, prepared (resumable), unconfigured
}

// CacheInfo lists what a kernel cache holds.
type CacheInfo struct {
	Dir       string
	Kernels   []CacheEntry
	Sources   []CacheEntry // src/: pristine source trees the base trees link to
	Trees     []CacheEntry // base trees: source + objects of source + fragments
	Snapshots []CacheEntry // snapshots/: saved VM states a run restores
	Leftovers []CacheEntry // of builds or saves that crashed: *.tmp, variant-*, bench-*
	Logs      []CacheEntry // logs of failed builds
}

// InspectCache lists the kernels, trees and sources of a cache directory.
// Sizes count each file once: a tree's size is what it does not share with
// its source (hard links), i.e. its objects.
func InspectCache(dir string) (*CacheInfo, error) {
	info := &CacheInfo{Dir: dir}
	u := newUsage()
	entries := func(sub string) []os.DirEntry {
		es, _ := os.ReadDir(filepath.Join(dir, sub))
		return es
	}
	for _, e := range entries("kernels") {
		p := filepath.Join(dir, "kernels", e.Name())
		if strings.HasSuffix(e.Name(), ".tmp") {
			info.Leftovers = append(info.Leftovers, CacheEntry{Kind: "leftover", Key: "kernels/" + e.Name(), Path: p, Size: u.size(p), LastUsed: mtime(p)})
			continue
		}
		k := CacheEntry{Kind: "kernel", Key: e.Name(), Path: p, Size: u.size(p), LastUsed: lastUse(p, "info.json")}
		if data, err := os.ReadFile(filepath.Join(p, "info.json")); err == nil {
			var a Artifact
			if json.Unmarshal(data, &a) == nil {
				k.Release, k.Variant, k.Source = a.Release, a.Variant, a.Source
				k.Patches = a.Stack
				if len(k.Patches) == 0 {
					for _, p := range a.Patches {
						k.Patches = append(k.Patches, filepath.Base(p))
					}
				}
			}
		}
		k.InUse = locked(filepath.Join(dir, "locks", "kernel-"+e.Name()))
		info.Kernels = append(info.Kernels, k)
	}
	for _, e := range entries("src") {
		p := filepath.Join(dir, "src", e.Name())
		if strings.HasSuffix(e.Name(), ".tmp") {
			info.Leftovers = append(info.Leftovers, CacheEntry{Kind: "leftover", Key: "src/" + e.Name(), Path: p, Size: u.size(p), LastUsed: mtime(p)})
			continue
		}
		info.Sources = append(info.Sources, CacheEntry{Kind: "src", Key: e.Name(), Path: p, Size: u.size(p), LastUsed: mtime(p),
			InUse: locked(filepath.Join(dir, "locks", "src-"+e.Name()))})
	}
	for _, e := range entries("trees") {
		p := filepath.Join(dir, "trees", e.Name())
		if strings.HasPrefix(e.Name(), "variant-") || strings.HasPrefix(e.Name(), "bench-") {
			info.Leftovers = append(info.Leftovers, CacheEntry{Kind: "leftover", Key: "trees/" + e.Name(), Path: p, Size: u.size(p), LastUsed: mtime(p)})
			continue
		}
		t := CacheEntry{Kind: "tree", Key: e.Name(), Path: p, Size: u.size(p), LastUsed: lastUse(p, "built", "prepared"),
			InUse: locked(filepath.Join(dir, "locks", "tree-"+e.Name()))}
		t.State = "unconfigured"
		if exists(filepath.Join(p, "built")) {
			t.State = "built"
		} else if exists(filepath.Join(p, "prepared")) {
			t.State = "prepared"
		}
		var ti treeInfo
		if data, err := os.ReadFile(filepath.Join(p, "tree.json")); err == nil && json.Unmarshal(data, &ti) == nil {
			t.Source, t.SrcDir, t.Patches = ti.Source, ti.SrcDir, ti.Fragments
		}
		info.Trees = append(info.Trees, t)
	}
	releases := map[string]string{}
	for _, k := range info.Kernels {
		releases[k.Key] = k.Release
	}
	for _, e := range entries("snapshots") {
		p := filepath.Join(dir, "snapshots", e.Name())
		switch {
		case !e.IsDir():
			continue // <key>.lock
		case strings.HasSuffix(e.Name(), ".tmp"):
			info.Leftovers = append(info.Leftovers, CacheEntry{Kind: "leftover", Key: "snapshots/" + e.Name(), Path: p, Size: u.size(p), LastUsed: mtime(p)})
			continue
		}
		// meta.json is written last and touched by every restore.
		sn := CacheEntry{Kind: "snapshot", Key: e.Name(), Path: p, Size: u.size(p), LastUsed: mtime(filepath.Join(p, "meta.json")),
			InUse: locked(p + ".lock")}
		var meta struct {
			Kernel string `json:"kernel_key"`
			Shape  string `json:"shape"`
		}
		if data, err := os.ReadFile(filepath.Join(p, "meta.json")); err == nil && json.Unmarshal(data, &meta) == nil {
			sn.KernelKey, sn.Release, sn.Source = meta.Kernel, releases[meta.Kernel], meta.Shape
		}
		info.Snapshots = append(info.Snapshots, sn)
	}
	for _, e := range entries("logs") {
		p := filepath.Join(dir, "logs", e.Name())
		info.Logs = append(info.Logs, CacheEntry{Kind: "log", Key: e.Name(), Path: p, Size: u.size(p), LastUsed: mtime(p)})
	}
	for _, l := range [][]CacheEntry{info.Kernels, info.Sources, info.Trees, info.Snapshots, info.Leftovers, info.Logs} {
		sort.Slice(l, func(i, j int) bool { return l[i].LastUsed.After(l[j].LastUsed) })
	}
	return info, nil
}

// PruneResult says what a prune removed and what it left because it is in use.
type PruneResult struct {
	Removed []CacheEntry
	Skipped []CacheEntry // in use: their lock is held
	Freed   int64
}

// Prune removes kernels (and, unless keepTrees, base trees and the sources
// no remaining tree links to) not used for olderThan, snapshots not used
// for olderThan or of a kernel no longer cached, the leftovers of crashed
// builds and saves, and old logs. It never removes what a held lock protects:
// each lock is taken without waiting and the entry skipped if that fails.
// With dryRun it only reports.
func Prune(dir string, olderThan time.Duration, keepTrees, dryRun bool) (*PruneResult, error) {
	info, err := InspectCache(dir)
	if err != nil {
		return nil, err
	}
	cutoff := time.Now().Add(-olderThan)
	res := &PruneResult{}
	var errs []error
	// remove takes lock (if any) without waiting, then removes e.
	remove := func(e CacheEntry, lock string) bool {
		if lock != "" {
			unlock, ok, err := tryLock(lock, syscall.LOCK_EX)
			if err != nil {
				errs = append(errs, err)
				return false
			}
			if !ok {
				res.Skipped = append(res.Skipped, e)
				return false
			}
			defer unlock()
		}
		e.Size = unsharedSize(e.Path)
		if !dryRun {
			if err := os.RemoveAll(e.Path); err != nil {
				errs = append(errs, fmt.Errorf("prune %s: %w", e.Path, err))
				return false
			}
			if lock != "" {
				os.Remove(lock) // while holding it; lockFile notices a replaced file
			}
		}
		res.Removed = append(res.Removed, e)
		res.Freed += e.Size
		return true
	}
	lock := func(kind, key string) string { return filepath.Join(dir, "locks", kind+"-"+key) }

	for _, k := range info.Kernels {
		if k.LastUsed.Before(cutoff) {
			remove(k, lock("kernel", k.Key))
		}
	}
	gone := map[string]bool{}
	for _, r := range res.Removed {
		gone[r.Key] = true
	}
	kernels := map[string]bool{}
	for _, k := range info.Kernels {
		kernels[k.Key] = !gone[k.Key]
	}
	for _, sn := range info.Snapshots {
		// A snapshot is worth nothing without its kernel (its key holds
		// the kernel's): one whose kernel is gone goes too. The lock is
		// the one its maker holds; a restore holds none and, if the files
		// go under it, boots cold.
		if sn.LastUsed.Before(cutoff) || (sn.KernelKey != "" && !kernels[sn.KernelKey]) {
			remove(sn, sn.Path+".lock")
		}
	}
	for _, l := range info.Leftovers {
		name := filepath.Base(l.Path)
		switch {
		case strings.HasPrefix(l.Key, "snapshots/"):
			remove(l, strings.TrimSuffix(l.Path, ".tmp")+".lock")
		case strings.HasPrefix(l.Key, "kernels/"):
			remove(l, lock("kernel", strings.TrimSuffix(name, ".tmp")))
		case strings.HasPrefix(l.Key, "trees/variant-"):
			remove(l, lock("kernel", strings.TrimPrefix(name, "variant-")))
		case strings.HasPrefix(l.Key, "src/"):
			remove(l, lock("src", strings.TrimSuffix(name, ".tmp")))
		case l.LastUsed.Before(time.Now().Add(-time.Hour)): // bench-*: a bench runs for minutes
			remove(l, "")
		}
	}
	if !keepTrees {
		kept := map[string]bool{}
		unknown := false
		for _, t := range info.Trees {
			if t.LastUsed.Before(cutoff) && remove(t, lock("tree", t.Key)) {
				continue
			}
			if t.SrcDir == "" {
				unknown = true
			}
			kept[t.SrcDir] = true
		}
		for _, s := range info.Sources {
			// A source a tree still links to frees nothing; one whose trees
			// are unknown (made before tree.json) is kept to be safe.
			if !unknown && !kept[s.Key] && s.LastUsed.Before(cutoff) {
				remove(s, lock("src", s.Key))
			}
		}
	}
	for _, l := range info.Logs {
		if l.LastUsed.Before(cutoff) {
			remove(l, "")
		}
	}
	if !dryRun {
		pruneLocks(dir)
	}
	return res, errors.Join(errs...)
}

// pruneLocks removes the lock files of entries that do not exist, each
// while holding it.
func pruneLocks(dir string) {
	locks, _ := os.ReadDir(filepath.Join(dir, "locks"))
	for _, l := range locks {
		kind, key, ok := strings.Cut(l.Name(), "-")
		if !ok {
			continue
		}
		entry := map[string]string{"kernel": "kernels", "tree": "trees", "src": "src"}[kind]
		if entry == "" || exists(filepath.Join(dir, entry, key)) {
			continue
		}
		p := filepath.Join(dir, "locks", l.Name())
		if unlock, ok, err := tryLock(p, syscall.LOCK_EX); err == nil && ok {
			os.Remove(p)
			unlock()
		}
	}
}

// removeKernel removes one kernel from the cache, waiting for nobody: it
// is skipped when its lock is held.
func (b *Builder) removeKernel(key string) {
	lock := b.lockPath("kernel", key)
	unlock, ok, err := tryLock(lock, syscall.LOCK_EX)
	if err != nil || !ok {
		return
	}
	defer unlock()
	os.RemoveAll(filepath.Join(b.CacheDir, "kernels", key))
	os.Remove(lock)
}

// DiskUsage is the space path takes on disk, each inode counted once.
func DiskUsage(path string) int64 { return newUsage().size(path) }

type fileID struct{ dev, ino uint64 }

type usage struct{ seen map[fileID]bool }

func newUsage() *usage { return &usage{seen: map[fileID]bool{}} }

func (u *usage) size(path string) int64 {
	var total int64
	filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			total += fi.Size()
			return nil
		}
		id := fileID{uint64(st.Dev), st.Ino}
		if !u.seen[id] {
			u.seen[id] = true
			total += st.Blocks * 512
		}
		return nil
	})
	return total
}

// unsharedSize is what removing path frees: files with no other link.
func unsharedSize(path string) int64 {
	var total int64
	filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if fi, err := d.Info(); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok && (st.Nlink <= 1 || d.IsDir()) {
				total += st.Blocks * 512
			}
		}
		return nil
	})
	return total
}

// lastUse is the mtime of dir/last-used, else of the first mark that exists,
// else of dir.
func lastUse(dir string, marks ...string) time.Time {
	for _, m := range append([]string{lastUsed}, marks...) {
		if fi, err := os.Stat(filepath.Join(dir, m)); err == nil {
			return fi.ModTime()
		}
	}
	return mtime(dir)
}

func mtime(p string) time.Time {
	fi, err := os.Stat(p)
	if err != nil {
		return time.Time{}
	}
	return fi.ModTime()
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// locked reports whether someone holds path's lock.
func locked(path string) bool {
	if !exists(path) {
		return false
	}
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	// Exclusive, so that a shared holder (a variant building from a tree)
	// counts too.
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return errors.Is(err, syscall.EWOULDBLOCK)
	}
	return false
}
