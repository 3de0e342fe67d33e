package kernel

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
)

// applyPatch applies one patch (a mail from an mbox or a plain diff) with
// patch -p1. A dry run comes first so a failing patch leaves the tree as it
// was, and the error names the patch, its subject and the failing hunks.
// prepare, when not nil, is called for every path the patch touches before
// anything reads or writes it (a copy-on-write tree makes them real files).
func applyPatch(ctx context.Context, tree string, p Patch, prepare func(rel string) error) error {
	args := []string{"-p1", "--batch", "--forward", "--no-backup-if-mismatch"}
	prepared := map[string]bool{}
	prep := func(paths []string) (bool, error) {
		more := false
		for _, rel := range paths {
			if prepared[rel] || prepare == nil {
				continue
			}
			prepared[rel], more = true, true
			if err := prepare(rel); err != nil {
				return false, fmt.Errorf("patch %s (%q): %w", p.Name(), p.Subject, err)
			}
		}
		return more, nil
	}
	if _, err := prep(touchedPaths(p.Data)); err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		dry := exec.CommandContext(ctx, "patch", append([]string{"--dry-run"}, args...)...)
		dry.Dir = tree
		dry.Stdin = bytes.NewReader(p.Data)
		out, err := dry.CombinedOutput()
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("patch %s: %w", p.Name(), ctx.Err())
			}
			return &PatchError{Patch: p.File, Index: p.Index, Count: p.Count, Subject: p.Subject, Hunks: failedHunks(string(out)), Output: string(out)}
		}
		// The dry run names every file patch(1) will write: make sure each
		// was prepared, else prepare it and check again.
		more, err := prep(checkedFiles(string(out)))
		if err != nil {
			return err
		}
		if !more {
			break
		}
		if attempt > 0 {
			return fmt.Errorf("patch %s (%q): the files it touches keep changing", p.Name(), p.Subject)
		}
	}
	real := exec.CommandContext(ctx, "patch", args...)
	real.Dir = tree
	real.Stdin = bytes.NewReader(p.Data)
	if out, err := real.CombinedOutput(); err != nil {
		return fmt.Errorf("patch %s: applied in a dry run but not for real: %w\n%s", p.Name(), err, out)
	}
	return nil
}

// PatchError says which patch did not apply and where.
type PatchError struct {
	Patch   string // the file
	Index   int    // 1-based position in the file (an mbox)
	Count   int    // patches in the file
	Subject string
	Hunks   []string // e.g. "fs/ext4/move_extent.c: Hunk #2 FAILED at 612."
	Output  string
}

func (e *PatchError) Error() string {
	name := filepath.Base(e.Patch)
	if e.Count > 1 {
		name = fmt.Sprintf("%s[%d/%d]", name, e.Index, e.Count)
	}
	msg := fmt.Sprintf("patch %s (%q) does not apply", name, e.Subject)
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

// checkedFiles lists the files a dry run of patch(1) said it would patch.
func checkedFiles(out string) []string {
	var files []string
	for _, line := range strings.Split(out, "\n") {
		if m := checkingFile.FindStringSubmatch(line); m != nil {
			files = append(files, strings.Trim(m[1], "'\""))
		}
	}
	return files
}
