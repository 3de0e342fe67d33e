package harness

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"patchbay/record"
	"patchbay/safefile"
)

// Merge joins the summaries of results directories that ran parts of one
// plan: the shards of `run --shard i/K`, or variants run separately with
// the same seed. Each part's Dir names it in errors. It refuses parts of
// different cases, seeds, workloads or guest images, a variant built from
// different kernels (or built in one part and failed in another), shards
// of different plans, and a (variant, index) run present twice. The result
// has the runs of every part, per variant in index order, as the
// unsharded run would have them; its Dir is empty.
func Merge(parts []*record.Summary) (*record.Summary, error) {
	if len(parts) == 0 {
		return nil, errors.New("merge: no results directories")
	}
	first := parts[0]
	for _, p := range parts[1:] {
		switch {
		case p.Case != first.Case:
			return nil, fmt.Errorf("merge: %s is case %q but %s is case %q", first.Dir, first.Case, p.Dir, p.Case)
		case p.Seed != first.Seed:
			return nil, fmt.Errorf("merge: %s ran seed %d but %s ran seed %d: runs of different seeds are different experiments", first.Dir, first.Seed, p.Dir, p.Seed)
		case p.Workload != first.Workload:
			return nil, fmt.Errorf("merge: %s and %s ran different workloads (%+v vs %+v): was --duration the same?", first.Dir, p.Dir, first.Workload, p.Workload)
		case !maps.Equal(p.Inputs, first.Inputs):
			return nil, fmt.Errorf("merge: %s and %s ran with different case inputs (%v vs %v)", first.Dir, p.Dir, first.Inputs, p.Inputs)
		case p.Image != "" && first.Image != "" && p.Image != first.Image:
			return nil, fmt.Errorf("merge: %s used guest image %s but %s used %s", first.Dir, first.Image, p.Dir, p.Image)
		}
	}
	shard, err := mergeShards(parts)
	if err != nil {
		return nil, err
	}

	out := &record.Summary{
		Case: first.Case, Question: first.Question, CaseFile: first.CaseFile, Inputs: first.Inputs, Baseline: first.Baseline,
		Seed: first.Seed, Workload: first.Workload, Shard: shard,
	}
	var end time.Time
	var accels, stops []string
	for _, p := range parts {
		if out.Started.IsZero() || (!p.Started.IsZero() && p.Started.Before(out.Started)) {
			out.Started = p.Started
		}
		if e := p.Started.Add(time.Duration(p.Seconds * float64(time.Second))); e.After(end) {
			end = e
		}
		if p.Accel != "" && !slices.Contains(accels, p.Accel) {
			accels = append(accels, p.Accel)
			out.AccelNote = p.AccelNote
		}
		if out.Image == "" {
			out.Image = p.Image
		}
		out.PlannedRuns = max(out.PlannedRuns, p.PlannedRuns)
		if p.StoppedEarly {
			out.StoppedEarly = true
			stops = append(stops, p.Dir+": "+p.StopReason)
		}
		out.MergedFrom = append(out.MergedFrom, p.Dir)
	}
	if !end.IsZero() {
		out.Seconds = end.Sub(out.Started).Seconds()
	}
	out.Accel = strings.Join(accels, ",")
	if len(accels) > 1 {
		out.AccelNote = "the parts ran under " + strings.Join(accels, " and ") + ": see each run's accel"
	}
	out.StopReason = strings.Join(stops, "; ")

	index := map[string]int{}    // variant -> position in out.Variants
	from := map[string]string{}  // variant -> dir its kernel or build error came from
	owner := map[string]string{} // "variant#index" -> dir
	for _, p := range parts {
		for _, v := range p.Variants {
			i, ok := index[v.Name]
			if !ok {
				i = len(out.Variants)
				index[v.Name] = i
				out.Variants = append(out.Variants, record.VariantSummary{
					Name: v.Name, Description: v.Description, Patches: v.Patches, Expect: v.Expect,
				})
			}
			m := &out.Variants[i]
			if err := mergeKernel(m, &v, from[v.Name], p.Dir); err != nil {
				return nil, err
			}
			if (v.Kernel != nil || v.BuildError != "") && from[v.Name] == "" {
				from[v.Name] = p.Dir
			}
			for _, r := range v.Runs {
				if r == nil {
					continue
				}
				id := v.Name + "#" + strconv.Itoa(r.Index)
				if d, dup := owner[id]; dup {
					return nil, fmt.Errorf("merge: run %s is in both %s and %s: the parts overlap (the same shard twice, or the same runs without --shard?)", id, d, p.Dir)
				}
				owner[id] = p.Dir
				m.Runs = append(m.Runs, r)
			}
		}
	}
	for i := range out.Variants {
		sort.SliceStable(out.Variants[i].Runs, func(a, b int) bool {
			return out.Variants[i].Runs[a].Index < out.Variants[i].Runs[b].Index
		})
	}
	// Baseline first, as a run lists them.
	sort.SliceStable(out.Variants, func(a, b int) bool {
		return out.Variants[a].Name == out.Baseline && out.Variants[b].Name != out.Baseline
	})
	return out, nil
}

// mergeKernel folds part dir's view of variant v into m: a part that did not
// build the variant (no job of it in that shard) says nothing; otherwise
// the kernel keys must agree.
func mergeKernel(m, v *record.VariantSummary, prevDir, dir string) error {
	switch {
	case v.Kernel == nil && v.BuildError == "":
		return nil
	case prevDir == "":
		m.Kernel, m.BuildError = v.Kernel, v.BuildError
		return nil
	case m.Kernel != nil && v.Kernel != nil:
		if m.Kernel.Key != v.Kernel.Key {
			return fmt.Errorf("merge: variant %s ran kernel %s in %s but kernel %s in %s: the case, its patches or the compiler differ", v.Name, m.Kernel.Key, prevDir, v.Kernel.Key, dir)
		}
	case m.Kernel != nil:
		return fmt.Errorf("merge: variant %s built (kernel %s) in %s but failed to build in %s", v.Name, m.Kernel.Key, prevDir, dir)
	case v.Kernel != nil:
		return fmt.Errorf("merge: variant %s failed to build in %s but built (kernel %s) in %s", v.Name, prevDir, v.Kernel.Key, dir)
	}
	return nil
}

// mergeShards checks that sharded parts come from one plan and returns the
// merged Shard field: "" when every shard (or no sharded part) is there,
// else the shards present, e.g. "0,2/4".
func mergeShards(parts []*record.Summary) (string, error) {
	var sharded, plain *record.Summary
	for _, p := range parts {
		if p.Shard == "" {
			plain = cmpOr(plain, p)
		} else {
			sharded = cmpOr(sharded, p)
		}
	}
	if sharded == nil {
		return "", nil
	}
	if plain != nil {
		return "", fmt.Errorf("merge: %s is shard %s but %s is not sharded", sharded.Dir, sharded.Shard, plain.Dir)
	}
	first, err := ParseShard(sharded.Shard)
	if err != nil {
		return "", fmt.Errorf("merge: %s: %w", sharded.Dir, err)
	}
	have := map[int]string{}
	for _, p := range parts {
		s, err := ParseShard(p.Shard)
		if err != nil {
			return "", fmt.Errorf("merge: %s: %w", p.Dir, err)
		}
		switch {
		case s.Count != first.Count:
			return "", fmt.Errorf("merge: %s is shard %s but %s is shard %s: shards of different plans", sharded.Dir, first, p.Dir, s)
		case p.PlannedRuns != sharded.PlannedRuns:
			return "", fmt.Errorf("merge: %s planned %d runs per variant but %s planned %d: shards of different plans", sharded.Dir, sharded.PlannedRuns, p.Dir, p.PlannedRuns)
		}
		if d, dup := have[s.Index]; dup {
			return "", fmt.Errorf("merge: %s and %s are both shard %s", d, p.Dir, s)
		}
		have[s.Index] = p.Dir
	}
	if len(have) == first.Count {
		return "", nil
	}
	var idx []string
	for i := 0; i < first.Count; i++ {
		if _, ok := have[i]; ok {
			idx = append(idx, strconv.Itoa(i))
		}
	}
	return strings.Join(idx, ",") + "/" + strconv.Itoa(first.Count), nil
}

func cmpOr(a, b *record.Summary) *record.Summary {
	if a != nil {
		return a
	}
	return b
}

// LinkRuns puts every run folder of the parts (each part's Dir plus the
// run's relative Dir) under out at the same relative path: hard links
// where the file system allows, copies otherwise. Existing files are not
// overwritten.
func LinkRuns(out string, parts []*record.Summary) error {
	for _, p := range parts {
		for _, v := range p.Variants {
			for _, r := range v.Runs {
				if r == nil {
					continue
				}
				if !filepath.IsLocal(r.Dir) {
					return fmt.Errorf("%s: run %s#%d: run folder %q is not inside the results directory", p.Dir, v.Name, r.Index, r.Dir)
				}
				src := filepath.Join(p.Dir, r.Dir)
				if _, err := os.Stat(src); err != nil {
					return fmt.Errorf("run %s#%d: %w", v.Name, r.Index, err)
				}
				if err := linkTree(src, filepath.Join(out, r.Dir)); err != nil {
					return fmt.Errorf("run %s#%d from %s: %w", v.Name, r.Index, p.Dir, err)
				}
			}
		}
	}
	return nil
}

// linkTree recreates the tree src at dst with hard links (copies across
// file systems); sockets and other special files are skipped.
func linkTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(path)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		case d.Type().IsRegular():
			if err := os.Link(path, target); err == nil || errors.Is(err, fs.ErrExist) {
				return err
			}
			return copyFile(path, target)
		}
		return nil
	})
}

func copyFile(from, to string) error {
	in, err := safefile.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copying %s: %w", from, err)
	}
	return out.Close()
}
