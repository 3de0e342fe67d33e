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
)

// Spec is everything that determines a kernel image.
type Spec struct {
	Name      string   // variant name, for progress and errors only
	Source    Source   //
	Fragments []string // kconfig fragments, merged in order on top of tinyconfig
	Patches   []string // patch files applied in order on top of the source
}

// Artifact is a built kernel in the cache.
type Artifact struct {
	Key       string   `json:"key"`
	Dir       string   `json:"dir"`
	BzImage   string   `json:"bzimage"`
	Vmlinux   string   `json:"vmlinux"`
	SystemMap string   `json:"system_map"`
	Config    string   `json:"config"`
	Release   string   `json:"release"`
	Source    string   `json:"source"`
	Patches   []string `json:"patches"`
	Compiler  string   `json:"compiler"`
	BuildSecs float64  `json:"build_seconds"`
	Cached    bool     `json:"-"`
}

// Builder builds kernels into a cache directory.
type Builder struct {
	CacheDir string    // root of the cache, e.g. ~/.cache/patchbay
	Jobs     int       // make -j; 0 means one per CPU
	Progress io.Writer // step lines; nil for none
}

const arch = "x86_64"

// Build returns the cached kernel for spec, building what is missing: the
// base tree (source + fragments) once, then the variant's patches on a copy
// of the base objects so only what they touch recompiles.
func (b *Builder) Build(ctx context.Context, spec Spec) (*Artifact, error) {
	log := &stepLog{w: b.Progress, name: spec.Name, start: time.Now()}
	srcID, err := spec.Source.identity(ctx)
	if err != nil {
		return nil, err
	}
	compiler, err := compilerVersion(ctx)
	if err != nil {
		return nil, err
	}
	baseKey, err := treeKey(srcID, compiler, b.cc(), spec.Fragments)
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	fmt.Fprintf(h, "kernel-v1\x00%s\x00", baseKey)
	for _, p := range spec.Patches {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("variant %s: patch: %w", spec.Name, err)
		}
		fmt.Fprintf(h, "%d\x00", len(data))
		h.Write(data)
	}
	key := hex.EncodeToString(h.Sum(nil))[:24]
	dir := filepath.Join(b.CacheDir, "kernels", key)
	if a, err := loadArtifact(dir); err == nil {
		a.Cached = true
		log.step("cached kernel %s", key)
		return a, nil
	}

	unlock, err := lockFile(ctx, filepath.Join(b.CacheDir, "locks", "kernel-"+key))
	if err != nil {
		return nil, err
	}
	defer unlock()
	if a, err := loadArtifact(dir); err == nil { // built by another process meanwhile
		a.Cached = true
		return a, nil
	}

	start := time.Now()
	base, err := b.ensureBase(ctx, log, spec, srcID, baseKey)
	if err != nil {
		return nil, err
	}
	tree := base
	if len(spec.Patches) > 0 {
		tree, err = b.variantTree(ctx, log, spec, baseKey, key)
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(filepath.Dir(tree))
		log.step("building (incremental on the base objects)")
		if err := b.make(ctx, tree, filepath.Join(filepath.Dir(tree), "build.log"), "bzImage"); err != nil {
			return nil, fmt.Errorf("variant %s: %w", spec.Name, err)
		}
	}
	a := &Artifact{
		Key: key, Source: srcID, Patches: spec.Patches, Compiler: compiler,
		BuildSecs: time.Since(start).Seconds(),
	}
	if err := saveArtifact(tree, dir, a); err != nil {
		return nil, fmt.Errorf("variant %s: %w", spec.Name, err)
	}
	log.step("kernel %s ready (%s)", a.Release, key)
	return a, nil
}

// ensureBase prepares and builds the base tree for the source + fragments.
// It returns the path of the tree (with the objects in tree/out).
func (b *Builder) ensureBase(ctx context.Context, log *stepLog, spec Spec, srcID, baseKey string) (string, error) {
	root := filepath.Join(b.CacheDir, "trees", baseKey)
	tree := filepath.Join(root, "linux")
	unlock, err := lockFile(ctx, filepath.Join(b.CacheDir, "locks", "tree-"+baseKey))
	if err != nil {
		return "", err
	}
	defer unlock()
	if _, err := os.Stat(filepath.Join(root, "built")); err == nil {
		return tree, nil
	}
	pristine := filepath.Join(b.CacheDir, "src", hashString(srcID)[:24])
	if err := os.MkdirAll(filepath.Dir(pristine), 0o755); err != nil {
		return "", err
	}
	if err := spec.Source.unpack(ctx, pristine, log); err != nil {
		return "", err
	}
	if _, err := os.Stat(filepath.Join(root, "prepared")); err != nil {
		if err := os.RemoveAll(root); err != nil {
			return "", err
		}
		if err := os.MkdirAll(root, 0o755); err != nil {
			return "", err
		}
		// Hard links: the tree costs no space, and patch(1) replaces the
		// files it changes instead of writing through the link.
		if err := run(ctx, "", nil, "cp", "-al", pristine, tree); err != nil {
			return "", fmt.Errorf("base tree: %w", err)
		}
		if err := b.configure(ctx, log, tree, filepath.Join(root, "build.log"), spec.Fragments); err != nil {
			return "", err
		}
		if err := touch(filepath.Join(root, "prepared")); err != nil {
			return "", err
		}
	}
	log.step("building base kernel (from clean: ~17 min on 2 cores; ccache makes rebuilds fast)")
	if err := b.make(ctx, tree, filepath.Join(root, "build.log"), "bzImage"); err != nil {
		return "", fmt.Errorf("base kernel: %w", err)
	}
	return tree, touch(filepath.Join(root, "built"))
}

// configure writes out/.config: tinyconfig, the fragments merged with the
// kernel's own merge_config.sh, olddefconfig, then a check of every symbol.
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
		return fmt.Errorf("merge_config.sh: %w", err)
	}
	if err := b.make(ctx, tree, logPath, "olddefconfig"); err != nil {
		return err
	}
	final, err := os.ReadFile(filepath.Join(out, ".config"))
	if err != nil {
		return err
	}
	return verifyConfig(reqs, final)
}

// variantTree makes a tree for the patched variant: hard links of the
// pristine source, a real copy of the base objects (mtimes kept so make
// sees them as up to date), then the patches.
func (b *Builder) variantTree(ctx context.Context, log *stepLog, spec Spec, baseKey, key string) (string, error) {
	root := filepath.Join(b.CacheDir, "trees", "variant-"+key)
	if err := os.RemoveAll(root); err != nil {
		return "", err
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", err
	}
	tree := filepath.Join(root, "linux")
	base := filepath.Join(b.CacheDir, "trees", baseKey, "linux")
	fail := func(err error) (string, error) {
		os.RemoveAll(root)
		return "", err
	}
	log.step("copying base objects")
	// Both copies keep paths relative: out/ sits inside the tree, so kbuild
	// uses srctree=".." and the recorded commands match in the new place.
	if err := run(ctx, "", nil, "cp", "-al", base, tree); err != nil {
		return fail(fmt.Errorf("variant %s: linking source: %w", spec.Name, err))
	}
	// The objects must be real copies: the compiler writes through links.
	if err := os.RemoveAll(filepath.Join(tree, "out")); err != nil {
		return fail(err)
	}
	if err := run(ctx, "", nil, "cp", "-a", filepath.Join(base, "out"), filepath.Join(tree, "out")); err != nil {
		return fail(fmt.Errorf("variant %s: copying objects: %w", spec.Name, err))
	}
	for i, p := range spec.Patches {
		log.step("applying %d/%d %s", i+1, len(spec.Patches), filepath.Base(p))
		if err := applyPatch(ctx, tree, p); err != nil {
			return fail(fmt.Errorf("variant %s: %w", spec.Name, err))
		}
	}
	return tree, nil
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
func (b *Builder) make(ctx context.Context, tree, logPath, target string) error {
	jobs := b.Jobs
	if jobs <= 0 {
		jobs = runtime.NumCPU()
	}
	args := []string{
		"O=out", "ARCH=" + arch, fmt.Sprintf("-j%d", jobs), "CC=" + b.cc(),
		"KBUILD_BUILD_USER=patchbay", "KBUILD_BUILD_HOST=patchbay",
		"KBUILD_BUILD_TIMESTAMP=2024-01-01", target,
	}
	if err := runLogged(ctx, tree, logPath, b.env(), "make", args...); err != nil {
		return fmt.Errorf("make %s: %w", target, err)
	}
	return nil
}

func saveArtifact(tree, dir string, a *Artifact) error {
	tmp := dir + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return err
	}
	out := filepath.Join(tree, "out")
	files := map[string]string{
		"arch/x86/boot/bzImage": "bzImage", "vmlinux": "vmlinux",
		"System.map": "System.map", ".config": "config",
	}
	for from, to := range files {
		if err := copyFile(filepath.Join(out, from), filepath.Join(tmp, to)); err != nil {
			return fmt.Errorf("saving kernel: %w", err)
		}
	}
	if data, err := os.ReadFile(filepath.Join(filepath.Dir(tree), "build.log")); err == nil {
		_ = os.WriteFile(filepath.Join(tmp, "build.log"), data, 0o644)
	}
	rel, err := os.ReadFile(filepath.Join(out, "include/config/kernel.release"))
	if err != nil {
		return fmt.Errorf("saving kernel: %w", err)
	}
	a.Release = strings.TrimSpace(string(rel))
	info, err := json.MarshalIndent(a, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(tmp, "info.json"), info, 0o644); err != nil {
		return err
	}
	os.RemoveAll(dir)
	if err := os.Rename(tmp, dir); err != nil {
		return err
	}
	a.setPaths(dir)
	return nil
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
	a.setPaths(dir)
	if _, err := os.Stat(a.BzImage); err != nil {
		return nil, err
	}
	return &a, nil
}

func (a *Artifact) setPaths(dir string) {
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

// lockFile takes an exclusive flock, waiting until ctx ends.
func lockFile(ctx context.Context, path string) (func(), error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for lock %s: %w", path, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
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
