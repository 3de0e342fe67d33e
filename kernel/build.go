package kernel

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"patchbay/record"
)

// Spec is everything that determines a kernel image.
type Spec struct {
	Name      string   // variant name, for progress and errors only
	Source    Source   //
	Fragments []string // kconfig fragments, merged in order on top of tinyconfig
	// Patches are applied in order on top of the source. An entry is a patch
	// or mail file, an mbox (all its mails), FILE#N (the Nth patch of an
	// mbox), a directory of patches or a quilt series file: see
	// ExpandPatches. The cache key covers the bytes of every patch.
	Patches []string
}

// Artifact is a built kernel in the cache. Its fields are the run record's
// (record.Kernel, in summary.json), so report reads them without this package.
type Artifact = record.Kernel

// Builder builds kernels into a cache directory.
type Builder struct {
	CacheDir string    // root of the cache, e.g. ~/.cache/patchbay
	Jobs     int       // make -j; 0 means one per CPU
	Progress io.Writer // step lines; nil for none
}

const (
	arch = "x86_64"
	// lastUsed is touched in a kernel's or a tree's directory each time it
	// is used; cache prune goes by it.
	lastUsed = "last-used"
	// baseBuildSpace is roughly what a base build writes to its out/
	// (a tinyconfig-based guest kernel: ~300 MB; KASAN or debug info more).
	baseBuildSpace = 600 << 20
)

// Build returns the cached kernel for spec, building what is missing: the
// base tree (source + fragments) once, then the variant's patches on a
// copy-on-write view of the base tree and a copy of its objects, so only
// what they touch recompiles. A failed build leaves nothing in the cache but
// its log (under logs/).
func (b *Builder) Build(ctx context.Context, spec Spec) (*Artifact, error) {
	a, err := b.build(ctx, spec)
	if err != nil {
		return nil, b.explainSpace(spec, err)
	}
	return a, nil
}

// baseIdentity resolves the source and computes the key of the base tree
// that spec builds on: source identity, compiler, CC and fragments.
func (b *Builder) baseIdentity(ctx context.Context, spec Spec) (src Source, srcID, compiler, baseKey string, err error) {
	src, srcID, err = spec.Source.resolve(ctx)
	if err != nil {
		return
	}
	compiler, err = compilerVersion(ctx)
	if err != nil {
		return
	}
	baseKey, err = treeKey(srcID, compiler, b.cc(), spec.Fragments)
	return
}

func (b *Builder) build(ctx context.Context, spec Spec) (*Artifact, error) {
	log := &stepLog{w: b.Progress, name: spec.Name, start: time.Now()}
	src, srcID, compiler, baseKey, err := b.baseIdentity(ctx, spec)
	if err != nil {
		return nil, err
	}
	stack, err := ExpandPatches(spec.Patches)
	if err != nil {
		return nil, fmt.Errorf("variant %s: %w", spec.Name, err)
	}
	key := kernelKey(baseKey, stack)
	dir := filepath.Join(b.CacheDir, "kernels", key)
	if a, err := b.hit(dir); err == nil {
		log.step("cached kernel %s", key)
		return a, nil
	}

	lock := b.lockPath("kernel", key)
	unlock, err := lockFile(ctx, lock, syscall.LOCK_EX)
	if err != nil {
		return nil, err
	}
	defer func() {
		if !exists(dir) { // failed: no lock file left either (tryLock copes)
			os.Remove(lock)
		}
		unlock()
	}()
	if a, err := b.hit(dir); err == nil { // built by another process meanwhile
		return a, nil
	}

	start := time.Now()
	base, release, err := b.ensureBase(ctx, log, spec, src, srcID, baseKey)
	if err != nil {
		return nil, fmt.Errorf("variant %s: %w", spec.Name, err)
	}
	defer release()
	tree := base
	if len(stack) > 0 {
		tree, err = b.variantTree(ctx, log, spec, stack, base, key)
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(filepath.Dir(tree))
		log.step("building (incremental on the base objects)")
		logPath := filepath.Join(filepath.Dir(tree), "build.log")
		if err := b.make(ctx, tree, logPath, "bzImage"); err != nil {
			return nil, fmt.Errorf("variant %s: %w", spec.Name, b.keepLog(err, spec.Name+"-"+key))
		}
	}
	a := &Artifact{
		Key: key, Source: srcID, Patches: spec.Patches, Compiler: compiler,
		Variant: spec.Name, BaseKey: baseKey, BuildSecs: time.Since(start).Seconds(),
	}
	for _, p := range stack {
		a.Stack = append(a.Stack, p.Name()+": "+p.Subject)
	}
	if err := saveArtifact(tree, dir, a, len(stack) > 0); err != nil {
		return nil, fmt.Errorf("variant %s: saving kernel: %w", spec.Name, err)
	}
	_ = touch(filepath.Join(dir, lastUsed))
	log.step("kernel %s ready (%s)", a.Release, key)
	return a, nil
}

// hit loads a cached kernel and records the use.
func (b *Builder) hit(dir string) (*Artifact, error) {
	a, err := loadArtifact(dir)
	if err != nil {
		return nil, err
	}
	a.Cached = true
	_ = touchTime(filepath.Join(dir, lastUsed)) // a read-only cache still serves
	return a, nil
}

func kernelKey(baseKey string, stack []Patch) string {
	h := sha256.New()
	fmt.Fprintf(h, "kernel-v1\x00%s\x00", baseKey)
	for _, p := range stack {
		fmt.Fprintf(h, "%d\x00", len(p.Data))
		h.Write(p.Data)
	}
	return hex.EncodeToString(h.Sum(nil))[:24]
}

func (b *Builder) lockPath(kind, key string) string {
	return filepath.Join(b.CacheDir, "locks", kind+"-"+key)
}

// treeInfo is trees/<key>/tree.json: what the base tree was made from.
type treeInfo struct {
	Source    string   `json:"source"`
	SrcDir    string   `json:"src_dir"` // name under src/
	Fragments []string `json:"fragments"`
}

// ensureBase returns the built base tree for the source + fragments (with
// its objects in tree/out), building it first if needed. The tree's lock is
// held shared until release is called, so prune cannot remove it while a
// variant is made from it.
func (b *Builder) ensureBase(ctx context.Context, log *stepLog, spec Spec, src Source, srcID, baseKey string) (string, func(), error) {
	root := filepath.Join(b.CacheDir, "trees", baseKey)
	tree := filepath.Join(root, "linux")
	lock := b.lockPath("tree", baseKey)
	for range 3 {
		unlock, err := lockFile(ctx, lock, syscall.LOCK_SH)
		if err != nil {
			return "", nil, err
		}
		if _, err := os.Stat(filepath.Join(root, "built")); err == nil {
			_ = touch(filepath.Join(root, lastUsed))
			if _, err := os.Stat(filepath.Join(root, "tree.json")); err != nil {
				_ = writeJSON(filepath.Join(root, "tree.json"), treeInfo{srcID, hashString(srcID)[:24], baseNames(spec.Fragments)})
			}
			return tree, unlock, nil
		}
		unlock()
		unlock, err = lockFile(ctx, lock, syscall.LOCK_EX)
		if err != nil {
			return "", nil, err
		}
		if _, serr := os.Stat(filepath.Join(root, "built")); serr != nil {
			err = b.buildBase(ctx, log, spec, src, srcID, root)
		}
		unlock()
		if err != nil {
			return "", nil, err
		}
	}
	return "", nil, fmt.Errorf("base tree %s: removed again and again while waiting for it (a prune running?)", root)
}

// buildBase unpacks the source, configures and builds the base tree at
// root. On failure it removes root (ccache keeps what was compiled) and
// keeps the build log under logs/.
func (b *Builder) buildBase(ctx context.Context, log *stepLog, spec Spec, src Source, srcID, root string) error {
	tree := filepath.Join(root, "linux")
	logPath := filepath.Join(root, "build.log")
	fail := func(err error) error {
		err = b.keepLog(err, "base-"+filepath.Base(root))
		os.RemoveAll(root)
		var le *logError
		if errors.As(err, &le) && err == error(le) {
			return fmt.Errorf("base kernel: %w", err)
		}
		return err
	}
	if _, err := os.Stat(filepath.Join(root, "prepared")); err != nil {
		srcDir := hashString(srcID)[:24]
		pristine := filepath.Join(b.CacheDir, "src", srcDir)
		if err := b.preparePristine(ctx, log, src, pristine); err != nil {
			return fail(err)
		}
		if err := os.RemoveAll(root); err != nil {
			return fmt.Errorf("base tree: %w", err)
		}
		if err := os.MkdirAll(root, 0o755); err != nil {
			return fail(fmt.Errorf("base tree: %w", err))
		}
		if err := writeJSON(filepath.Join(root, "tree.json"), treeInfo{srcID, srcDir, baseNames(spec.Fragments)}); err != nil {
			return fail(fmt.Errorf("base tree: %w", err))
		}
		// Hard links: the tree costs no space, and patch(1) replaces the
		// files it changes instead of writing through the link.
		unlockSrc, err := lockFile(ctx, b.lockPath("src", srcDir), syscall.LOCK_SH)
		if err != nil {
			return fail(err)
		}
		err = run(ctx, "", nil, "cp", "-al", pristine, tree)
		_ = touchTime(pristine)
		unlockSrc()
		if err != nil {
			return fail(fmt.Errorf("base tree: %w", err))
		}
		if err := b.configure(ctx, log, tree, logPath, spec.Fragments); err != nil {
			return fail(err)
		}
		if err := touch(filepath.Join(root, "prepared")); err != nil {
			return fail(err)
		}
	}
	if free, err := freeBytes(root); err == nil && free < baseBuildSpace {
		return fail(&NoSpaceError{Dir: b.CacheDir, Free: free, Need: baseBuildSpace, What: "building the base kernel"})
	}
	log.step("building base kernel (from clean: ~7-10 min on 2 cores without KVM; ccache makes rebuilds fast)")
	if err := b.make(ctx, tree, logPath, "bzImage"); err != nil {
		return fail(err)
	}
	if err := touch(filepath.Join(root, lastUsed)); err != nil {
		return fail(err)
	}
	if err := touch(filepath.Join(root, "built")); err != nil {
		return fail(err)
	}
	return nil
}

// preparePristine unpacks the source under src/ once, checking first that
// it fits.
func (b *Builder) preparePristine(ctx context.Context, log *stepLog, src Source, pristine string) error {
	unlock, err := lockFile(ctx, b.lockPath("src", filepath.Base(pristine)), syscall.LOCK_EX)
	if err != nil {
		return err
	}
	defer unlock()
	if _, err := os.Stat(filepath.Join(pristine, "Makefile")); err == nil {
		return nil
	}
	if need := src.size(ctx); need > 0 {
		if free, err := freeBytes(b.CacheDir); err == nil && free < need+need/16 {
			return &NoSpaceError{Dir: b.CacheDir, Free: free, Need: need, What: "unpacking " + src.String()}
		}
	}
	if err := os.MkdirAll(filepath.Dir(pristine), 0o755); err != nil {
		return fmt.Errorf("unpack %s: %w", src, err)
	}
	return src.unpack(ctx, pristine, log)
}

// configure writes out/.config: tinyconfig, the fragments merged with the
// kernel's own merge_config.sh, olddefconfig, then a check of every symbol.
// Fragments are applied in order and a later one overrides an earlier one.
func (b *Builder) configure(ctx context.Context, log *stepLog, tree, logPath string, fragments []string) error {
	var reqs []configRequest
	for _, f := range fragments {
		r, err := parseFragment(f)
		if err != nil {
			return err
		}
		reqs = append(reqs, r...)
	}
	log.step("configuring: tinyconfig + %s", strings.Join(baseNames(fragments), " + "))
	out := filepath.Join(tree, "out")
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	if err := b.make(ctx, tree, logPath, "tinyconfig"); err != nil {
		return err
	}
	args := append([]string{"-m", "-O", "out", "out/.config"}, fragments...)
	if err := runLogged(ctx, tree, logPath, b.env(), "scripts/kconfig/merge_config.sh", args...); err != nil {
		return err
	}
	if err := b.make(ctx, tree, logPath, "olddefconfig"); err != nil {
		return err
	}
	final, err := os.ReadFile(filepath.Join(out, ".config"))
	if err != nil {
		return err
	}
	return verifyConfig(laterWins(reqs), final)
}

// variantTree makes the copy-on-write tree of a variant (see tree.go) and
// applies its patches: first the patches on the source farm, so that a patch
// that does not apply fails before any object is copied, then the objects.
func (b *Builder) variantTree(ctx context.Context, log *stepLog, spec Spec, stack []Patch, base, key string) (string, error) {
	root := filepath.Join(b.CacheDir, "trees", "variant-"+key)
	fail := func(err error) (string, error) {
		os.RemoveAll(root)
		return "", fmt.Errorf("variant %s: %w", spec.Name, err)
	}
	if err := os.RemoveAll(root); err != nil {
		return fail(err)
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return fail(err)
	}
	// Physical paths: kbuild records them (realpath) in tools/ .cmd files.
	base, err := filepath.EvalSymlinks(base)
	if err != nil {
		return fail(err)
	}
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return fail(err)
	}
	tree := filepath.Join(realRoot, "linux")
	if err := makeFarm(base, tree); err != nil {
		return fail(fmt.Errorf("linking the base source: %w", err))
	}
	prepare := func(rel string) error { return materialize(tree, base, rel) }
	for i, p := range stack {
		log.step("applying %d/%d %s", i+1, len(stack), p.Name())
		if err := applyPatch(ctx, tree, p, prepare); err != nil {
			return fail(err)
		}
	}
	need, err := objectsSize(filepath.Join(base, "out"))
	if err != nil {
		return fail(fmt.Errorf("base objects: %w", err))
	}
	if free, err := freeBytes(root); err == nil && free < need+need/8 {
		return fail(&NoSpaceError{Dir: b.CacheDir, Free: free, Need: need, What: "copying the base objects"})
	}
	log.step("copying base objects")
	if err := copyObjects(ctx, filepath.Join(base, "out"), filepath.Join(tree, "out"), true); err != nil {
		return fail(fmt.Errorf("copying base objects: %w", err))
	}
	if err := relocateCmds(filepath.Join(tree, "out"), filepath.Join(base, "out"), filepath.Join(tree, "out")); err != nil {
		return fail(fmt.Errorf("relocating base objects: %w", err))
	}
	return tree, nil
}

// keepLog copies the log of a failed make to logs/NAME.log (the tree it was
// in is about to go) and points the error at it.
func (b *Builder) keepLog(err error, name string) error {
	var le *logError
	if !errors.As(err, &le) {
		return err
	}
	dst := filepath.Join(b.CacheDir, "logs", name+".log")
	if os.MkdirAll(filepath.Dir(dst), 0o755) == nil {
		if copyFile(le.Log, dst) == nil {
			le.Log = dst
			return err
		}
		os.Remove(dst)
	}
	le.Log = ""
	return err
}

func (b *Builder) cc() string {
	if _, err := exec.LookPath("ccache"); err == nil {
		return "ccache gcc"
	}
	return "gcc"
}

func (b *Builder) env() []string {
	return append(os.Environ(),
		"CCACHE_DIR="+filepath.Join(b.CacheDir, "ccache"),
		"ARCH="+arch,
	)
}

// make runs one kbuild target with the flags every build shares: the same
// CC and build identity, so that a copied tree's recorded commands match.
func (b *Builder) make(ctx context.Context, tree, logPath, target string, extraEnv ...string) error {
	jobs := b.Jobs
	if jobs <= 0 {
		jobs = runtime.NumCPU()
	}
	args := []string{
		"O=out", "ARCH=" + arch, fmt.Sprintf("-j%d", jobs), "CC=" + b.cc(),
		"KBUILD_BUILD_USER=patchbay", "KBUILD_BUILD_HOST=patchbay",
		"KBUILD_BUILD_TIMESTAMP=2024-01-01", target,
	}
	if err := runLogged(ctx, tree, logPath, append(b.env(), extraEnv...), "make", args...); err != nil {
		var le *logError
		if errors.As(err, &le) {
			le.What = "make " + target
			return le
		}
		return fmt.Errorf("make %s: %w", target, err)
	}
	return nil
}

// saveArtifact stores the kernel of tree in dir, atomically; with move the
// files are moved out of the tree (a variant tree about to be removed).
func saveArtifact(tree, dir string, a *Artifact, move bool) error {
	tmp := dir + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	err := fillArtifact(tree, tmp, a, move)
	if err == nil {
		os.RemoveAll(dir)
		err = os.Rename(tmp, dir)
	}
	if err != nil {
		os.RemoveAll(tmp)
		return err
	}
	setPaths(a, dir)
	return nil
}

func fillArtifact(tree, tmp string, a *Artifact, move bool) error {
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return err
	}
	out := filepath.Join(tree, "out")
	rel, err := os.ReadFile(filepath.Join(out, "include/config/kernel.release"))
	if err != nil {
		return err
	}
	a.Release = strings.TrimSpace(string(rel))
	files := map[string]string{
		"arch/x86/boot/bzImage": "bzImage", "vmlinux": "vmlinux",
		"System.map": "System.map", ".config": "config",
	}
	for from, to := range files {
		src, dst := filepath.Join(out, from), filepath.Join(tmp, to)
		if move && os.Rename(src, dst) == nil {
			continue
		}
		if err := copyFile(src, dst); err != nil {
			return err
		}
	}
	if data, err := os.ReadFile(filepath.Join(filepath.Dir(tree), "build.log")); err == nil {
		if err := os.WriteFile(filepath.Join(tmp, "build.log"), data, 0o644); err != nil {
			return err
		}
	}
	return writeJSON(filepath.Join(tmp, "info.json"), a)
}

func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}

func loadArtifact(dir string) (*Artifact, error) {
	data, err := os.ReadFile(filepath.Join(dir, "info.json"))
	if err != nil {
		return nil, err
	}
	var a Artifact
	if err := json.Unmarshal(data, &a); err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	setPaths(&a, dir)
	if _, err := os.Stat(a.BzImage); err != nil {
		return nil, err
	}
	return &a, nil
}

func setPaths(a *Artifact, dir string) {
	a.Dir = dir
	a.BzImage = filepath.Join(dir, "bzImage")
	a.Vmlinux = filepath.Join(dir, "vmlinux")
	a.SystemMap = filepath.Join(dir, "System.map")
	a.Config = filepath.Join(dir, "config")
}

func treeKey(srcID, compiler, cc string, fragments []string) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "tree-v1\x00%s\x00%s\x00%s\x00%s\x00", srcID, compiler, cc, arch)
	for _, f := range fragments {
		data, err := os.ReadFile(f)
		if err != nil {
			return "", fmt.Errorf("kconfig fragment: %w", err)
		}
		fmt.Fprintf(h, "%s\x00%d\x00", filepath.Base(f), len(data))
		h.Write(data)
	}
	return hex.EncodeToString(h.Sum(nil))[:24], nil
}

func compilerVersion(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "gcc", "--version").Output()
	if err != nil {
		return "", fmt.Errorf("gcc not found (run ci/setup.sh): %w", err)
	}
	first, _, _ := strings.Cut(string(out), "\n")
	return first, nil
}

// lockFile takes a flock (syscall.LOCK_EX or LOCK_SH), waiting until ctx
// ends. A lock file removed by prune while we waited is opened again.
func lockFile(ctx context.Context, path string, how int) (func(), error) {
	for {
		unlock, ok, err := tryLock(path, how)
		if err != nil {
			return nil, err
		}
		if ok {
			return unlock, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for lock %s: %w", path, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// tryLock takes a flock without waiting; ok is false when someone else
// holds it.
func tryLock(path string, how int) (unlock func(), ok bool, err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, false, fmt.Errorf("lock %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, false, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("lock %s: %w", path, err)
	}
	// The file may have been removed (prune) between open and flock.
	fi, err1 := f.Stat()
	pi, err2 := os.Stat(path)
	if err1 != nil || err2 != nil || !os.SameFile(fi, pi) {
		f.Close()
		return tryLock(path, how)
	}
	return func() { f.Close() }, true, nil
}

func hashString(s string) string { return hashBytes([]byte(s)) }

func hashBytes(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func baseNames(paths []string) []string {
	names := make([]string, len(paths))
	for i, p := range paths {
		names[i] = filepath.Base(p)
	}
	return names
}
