package kernel

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
)

// applyPatch applies one patch (a mail from an mbox or a plain diff) with
// patch -p1. A dry run comes first so a failing patch leaves the tree as it
// was, and the error names the patch, its subject and the failing hunks.
func applyPatch(ctx context.Context, tree, path string) error {
	args := []string{"-p1", "--batch", "--forward", "--no-backup-if-mismatch", "-i", path}
	dry := exec.CommandContext(ctx, "patch", append([]string{"--dry-run"}, args...)...)
	dry.Dir = tree
	out, err := dry.CombinedOutput()
	if err != nil {
		return &PatchError{Patch: path, Subject: patchSubject(path), Hunks: failedHunks(string(out)), Output: string(out)}
	}
	real := exec.CommandContext(ctx, "patch", args...)
	real.Dir = tree
	if out, err := real.CombinedOutput(); err != nil {
		return fmt.Errorf("patch %s: applied in a dry run but not for real: %w\n%s", path, err, out)
	}
	return nil
}

// PatchError says which patch did not apply and where.
type PatchError struct {
	Patch   string
	Subject string
	Hunks   []string // e.g. "fs/ext4/move_extent.c: Hunk #2 FAILED at 612."
	Output  string
}

func (e *PatchError) Error() string {
	msg := fmt.Sprintf("patch %s (%q) does not apply", filepath.Base(e.Patch), e.Subject)
	if len(e.Hunks) > 0 {
		return msg + ":\n  " + strings.Join(e.Hunks, "\n  ")
	}
	return msg + ":\n" + tail([]byte(e.Output), 10)
}

var (
	checkingFile = regexp.MustCompile(`^(?:checking|patching) file (.+)$`)
	hunkFailed   = regexp.MustCompile(`^Hunk #\d+ FAILED at \d+`)
	missingFile  = regexp.MustCompile(`^can't find file to patch`)
)

func failedHunks(out string) []string {
	var hunks []string
	file := ""
	for _, line := range strings.Split(out, "\n") {
		if m := checkingFile.FindStringSubmatch(line); m != nil {
			file = m[1]
		} else if hunkFailed.MatchString(line) {
			hunks = append(hunks, file+": "+strings.TrimSpace(line))
		} else if missingFile.MatchString(line) || strings.Contains(line, "Reversed (or previously applied) patch detected") {
			hunks = append(hunks, strings.TrimSpace(line))
		}
	}
	return hunks
}

// patchSubject is the Subject: header of a mail, or the file name for a
// plain diff.
func patchSubject(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return filepath.Base(path)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "Subject: ") {
			return strings.TrimPrefix(line, "Subject: ")
		}
		if strings.HasPrefix(line, "diff ") || strings.HasPrefix(line, "--- ") {
			break
		}
	}
	return filepath.Base(path)
}
