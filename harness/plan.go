package harness

import (
	"fmt"
	"strconv"
	"strings"

	"patchbay/record"
)

// Plan is the run matrix of a case in the order RunCase schedules it: run 0
// of every variant, then run 1, ... (so a session stopped early still has
// comparable evidence for every variant). Run k of every variant uses seed
// seed+k, whatever else is scheduled: a shard, a rerun or a larger --runs
// gives each (variant, index) the same seed. variants empty means all,
// baseline first; names are not checked here (see Case.SelectVariants).
func Plan(c *Case, variants []string, runs int, seed uint64) []record.Job {
	if len(variants) == 0 {
		variants = c.VariantNames()
	}
	var jobs []record.Job
	for k := 0; k < runs; k++ {
		for _, v := range variants {
			jobs = append(jobs, record.Job{Variant: v, Index: k, Seed: seed + uint64(k)})
		}
	}
	return jobs
}

// ShardOf is the shard (0-based, of k) that job number j of a plan belongs
// to: round robin, so every shard gets early runs of every variant.
func ShardOf(j, k int) int {
	if k <= 1 {
		return 0
	}
	return j % k
}

// Shard returns the jobs of shard i of k: job j of the plan goes to shard
// j % k. k <= 1 returns every job.
func Shard(jobs []record.Job, i, k int) []record.Job {
	var out []record.Job
	for j, job := range jobs {
		if ShardOf(j, k) == i {
			out = append(out, job)
		}
	}
	return out
}

// ShardSpec names one slice of a plan, "i/K" on the command line. The zero
// value means no sharding.
type ShardSpec struct {
	Index int // 0-based
	Count int
}

// Sharded reports whether s selects a slice of the plan.
func (s ShardSpec) Sharded() bool { return s.Count > 0 }

// String is "i/K", or "" when not sharded.
func (s ShardSpec) String() string {
	if !s.Sharded() {
		return ""
	}
	return fmt.Sprintf("%d/%d", s.Index, s.Count)
}

// ParseShard parses "i/K" with 0 <= i < K.
func ParseShard(s string) (ShardSpec, error) {
	a, b, ok := strings.Cut(s, "/")
	i, err1 := strconv.Atoi(strings.TrimSpace(a))
	k, err2 := strconv.Atoi(strings.TrimSpace(b))
	if !ok || err1 != nil || err2 != nil {
		return ShardSpec{}, fmt.Errorf("shard %q: want i/K, e.g. 0/4 (shards count from 0)", s)
	}
	spec := ShardSpec{Index: i, Count: k}
	if k < 1 {
		return ShardSpec{}, fmt.Errorf("shard %q: K must be at least 1", s)
	}
	if err := spec.Check(); err != nil {
		return ShardSpec{}, err
	}
	return spec, nil
}

// Check reports a shard index outside 0..Count-1.
func (s ShardSpec) Check() error {
	if s.Count < 0 || (s.Count > 0 && (s.Index < 0 || s.Index >= s.Count)) {
		return fmt.Errorf("shard %d/%d: want 0 <= i < K (shards count from 0)", s.Index, s.Count)
	}
	return nil
}

// SelectVariants checks the requested variant names against the case;
// empty means every variant, baseline first.
func (c *Case) SelectVariants(names []string) ([]string, error) {
	if len(names) == 0 {
		return c.VariantNames(), nil
	}
	seen := map[string]bool{}
	for _, n := range names {
		if _, ok := c.Variants[n]; !ok {
			return nil, fmt.Errorf("%s: no variant %q (have %s)", c.File, n, strings.Join(c.VariantNames(), ", "))
		}
		if seen[n] {
			return nil, fmt.Errorf("%s: variant %q requested twice", c.File, n)
		}
		seen[n] = true
	}
	return names, nil
}
