package kernel

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// VariantBench is the marginal cost of a variant that touches one file.
type VariantBench struct {
	File    string        // the file the generated patch touches
	Variant time.Duration // Build of a fresh variant (a one-line comment in File) on the built base
	Make    time.Duration // make bzImage after touching File in a prepared copy of the base tree
	Hit     time.Duration // Build of the same spec again: a cache hit, to a ready bzImage path
	Key     string        // the fresh variant's key (removed from the cache afterwards)
}

// Ratio is Variant / Make (goal <= 1.2).
func (v *VariantBench) Ratio() float64 { return v.Variant.Seconds() / v.Make.Seconds() }

// BenchVariant measures, on top of spec (built first if it is not cached):
// a fresh variant that adds a random one-line comment to file (so its key is
// new and the compiler really runs), the cache hit for that same variant,
// and the make alone — file touched in a full copy of the base tree, the
// builder's make command, ccache told to recompile — that it is compared
// with. The generated kernel is removed from the cache afterwards.
func (b *Builder) BenchVariant(ctx context.Context, spec Spec, file string) (*VariantBench, error) {
	if _, err := b.Build(ctx, spec); err != nil {
		return nil, fmt.Errorf("bench: the base variant: %w", err)
	}
	_, _, _, baseKey, err := b.baseIdentity(ctx, spec)
	if err != nil {
		return nil, err
	}
	base := filepath.Join(b.CacheDir, "trees", baseKey, "linux")
	unlock, err := lockFile(ctx, b.lockPath("tree", baseKey), syscall.LOCK_SH)
	if err != nil {
		return nil, err
	}
	defer unlock()

	tmp, err := os.MkdirTemp("", "patchbay-bench-")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	defer os.RemoveAll(tmp)
	patch, err := commentPatch(base, file, tmp)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	res := &VariantBench{File: file}

	vspec := spec
	vspec.Name = spec.Name + "+bench"
	vspec.Patches = append(append([]string(nil), spec.Patches...), patch)
	start := time.Now()
	a, err := b.Build(ctx, vspec)
	res.Variant = time.Since(start)
	if err != nil {
		return nil, fmt.Errorf("bench: fresh variant: %w", err)
	}
	defer b.removeKernel(a.Key)
	res.Key = a.Key
	if a.Cached {
		return nil, fmt.Errorf("bench: the generated variant %s was already cached", a.Key)
	}
	start = time.Now()
	a2, err := b.Build(ctx, vspec)
	res.Hit = time.Since(start)
	if err != nil {
		return nil, fmt.Errorf("bench: cache hit: %w", err)
	}
	if !a2.Cached {
		return nil, fmt.Errorf("bench: the second build of %s was not a cache hit", a.Key)
	}
	if _, err := os.Stat(a2.BzImage); err != nil {
		return nil, fmt.Errorf("bench: cache hit: %w", err)
	}

	if res.Make, err = b.timeMake(ctx, base, file); err != nil {
		return nil, fmt.Errorf("bench: make in a copy of the base tree: %w", err)
	}
	return res, nil
}

// timeMake copies the base tree the ordinary way (hard-linked source, real
// objects, recorded paths relocated), touches file and times the builder's
// make bzImage there, ccache told to recompile (as for a changed file).
func (b *Builder) timeMake(ctx context.Context, base, file string) (time.Duration, error) {
	base, err := filepath.EvalSymlinks(base)
	if err != nil {
		return 0, err
	}
	root, err := os.MkdirTemp(filepath.Join(b.CacheDir, "trees"), "bench-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(root)
	if root, err = filepath.EvalSymlinks(root); err != nil {
		return 0, err
	}
	tree := filepath.Join(root, "linux")
	if err := run(ctx, "", nil, "cp", "-al", base, tree); err != nil {
		return 0, err
	}
	if err := os.RemoveAll(filepath.Join(tree, "out")); err != nil {
		return 0, err
	}
	if err := copyObjects(ctx, filepath.Join(base, "out"), filepath.Join(tree, "out"), false); err != nil {
		return 0, err
	}
	// A hard-linked copy has real directories: objtool's sources move too.
	if err := relocateCmds(filepath.Join(tree, "out"), base+"/", tree+"/"); err != nil {
		return 0, err
	}
	target := filepath.Join(tree, file)
	if err := breakLink(target); err != nil {
		return 0, err
	}
	if err := touchTime(target); err != nil {
		return 0, err
	}
	start := time.Now()
	if err := b.make(ctx, tree, filepath.Join(root, "build.log"), "bzImage", "CCACHE_RECACHE=1"); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// commentPatch writes a patch that adds a random one-line comment at the
// top of file.
func commentPatch(base, file, dir string) (string, error) {
	data, err := os.ReadFile(filepath.Join(base, file))
	if err != nil {
		return "", err
	}
	lines := strings.SplitAfter(string(data), "\n")
	n := min(3, len(lines))
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return "", err
	}
	var p bytes.Buffer
	fmt.Fprintf(&p, "--- a/%s\n+++ b/%s\n@@ -1,%d +1,%d @@\n", file, file, n, n+1)
	fmt.Fprintf(&p, "+/* patchbay bench %s */\n", hex.EncodeToString(rnd[:]))
	for _, l := range lines[:n] {
		p.WriteString(" " + l)
	}
	path := filepath.Join(dir, "bench-"+hex.EncodeToString(rnd[:4])+".patch")
	return path, os.WriteFile(path, p.Bytes(), 0o644)
}
