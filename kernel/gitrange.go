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
	base, tip, _ := strings.Cut(rng, "..")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// Both ends become commit ids first: a revision git would read as an
	// option (--output=FILE) must never reach format-patch.
	baseID, err := resolveCommit(ctx, repo, base)
	if err != nil {
		return nil, fmt.Errorf("patch %s: range start: %w", ref, err)
	}
	tipID, err := resolveCommit(ctx, repo, tip)
	if err != nil {
		return nil, fmt.Errorf("patch %s: range end: %w", ref, err)
	}
	// No signature: it names the git version, which must not change the key.
	out, err := gitOutput(ctx, repo, "format-patch", "--stdout", "--no-signature", "--no-stat", "--end-of-options", baseID+".."+tipID)
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

// CheckRevision refuses a revision git could take for an option.
func CheckRevision(rev string) error {
	if rev == "" {
		return fmt.Errorf("empty revision")
	}
	if strings.HasPrefix(rev, "-") {
		return fmt.Errorf("revision %q starts with '-': refused, git would read it as an option", rev)
	}
	return nil
}

// CheckGitRevisions checks the revisions of a git:REPO@REV source or a
// git:REPO@BASE..TIP[#N] range, so that callers can refuse them where they
// know the input's origin (flag, file:line).
func CheckGitRevisions(val string) error {
	rest, ok := strings.CutPrefix(val, gitRangePrefix)
	if !ok {
		return nil
	}
	if m := memberRef.FindStringSubmatch(rest); m != nil {
		rest = m[1]
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return nil // the form is checked elsewhere
	}
	rev := rest[at+1:]
	if base, tip, isRange := strings.Cut(rev, ".."); isRange {
		if err := CheckRevision(base); err != nil {
			return fmt.Errorf("range start: %w", err)
		}
		if err := CheckRevision(tip); err != nil {
			return fmt.Errorf("range end: %w", err)
		}
		return nil
	}
	return CheckRevision(rev)
}

// resolveCommit turns a user-given revision into a commit id, refusing
// one that starts with '-' before git sees it.
func resolveCommit(ctx context.Context, repo, rev string) (string, error) {
	if err := CheckRevision(rev); err != nil {
		return "", err
	}
	out, err := gitOutput(ctx, repo, "rev-parse", "--verify", "--quiet", "--end-of-options", rev+"^{commit}")
	if err != nil {
		return "", fmt.Errorf("no commit %q in %s", rev, repo)
	}
	return strings.TrimSpace(string(out)), nil
}
