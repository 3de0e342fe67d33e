package kernel

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

const gitRangePrefix = "git:"

// readGitRange exports git:REPO@BASE..TIP with git format-patch, so that a
// series kept as a branch can be a variant's patches (and its patches can be
// dropped or replaced one by one) without an export step. The mails are
// what the cache key covers: the same commits give the same key.
func readGitRange(ref string) ([]Patch, error) {
	spec, member := ref, 0
	if m := memberRef.FindStringSubmatch(ref); m != nil {
		spec = m[1]
		member, _ = strconv.Atoi(m[2])
	}
	val := strings.TrimPrefix(spec, gitRangePrefix)
	at := strings.LastIndex(val, "@")
	if at <= 0 || !strings.Contains(val[at+1:], "..") {
		return nil, fmt.Errorf("patch %s: want git:REPO@BASE..TIP (a local repository and a commit range)", ref)
	}
	repo, rng := val[:at], val[at+1:]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// No signature: it names the git version, which must not change the key.
	out, err := gitOutput(ctx, repo, "format-patch", "--stdout", "--no-signature", "--no-stat", rng)
	if err != nil {
		return nil, fmt.Errorf("patch %s: %w", ref, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("patch %s: the range %s has no commits", ref, rng)
	}
	ps, err := parsePatches(spec, out, true)
	if err != nil {
		return nil, err
	}
	if member == 0 {
		return ps, nil
	}
	if member < 1 || member > len(ps) {
		return nil, fmt.Errorf("patch %s: the range holds %d patch(es), there is no #%d", ref, len(ps), member)
	}
	return ps[member-1 : member], nil
}
