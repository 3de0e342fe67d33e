package kernel

import (
	"bufio"
	"bytes"
	"fmt"
	"mime"
	"net/mail"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"patchbay/safefile"
)

// Patch is one patch of a stack: a single mail or diff, and where it came
// from. Data is exactly what patch(1) is given and what the cache key covers.
type Patch struct {
	File    string // the file it was read from
	Index   int    // 1-based position among the patches of File
	Count   int    // patches in File: 1 for a plain diff or a single mail
	Subject string // the mail's Subject:, or the file name of a plain diff
	Data    []byte
}

// Ref names the patch as an entry of Spec.Patches: the file, or FILE#N for
// the Nth patch of an mbox.
func (p Patch) Ref() string {
	if p.Count > 1 {
		return fmt.Sprintf("%s#%d", p.File, p.Index)
	}
	return p.File
}

// Name is the file's base name, with [N/M] for a member of an mbox.
func (p Patch) Name() string {
	if p.Count > 1 {
		return fmt.Sprintf("%s[%d/%d]", filepath.Base(p.File), p.Index, p.Count)
	}
	return filepath.Base(p.File)
}

// ExpandPatches turns the entries of a patch list into the ordered stack
// they stand for. An entry is
//   - a patch or mail file (one patch),
//   - an mbox (every mail that carries a diff, in order; a cover letter
//     "[PATCH 0/N]" is skipped),
//   - FILE#N, the Nth patch of an mbox (what Patch.Ref returns),
//   - a directory: its quilt series file if it has one, else its *.patch,
//     *.diff, *.mbx and *.mbox files in name order,
//   - a quilt series file (named series or *.series): the files it lists,
//     relative to it; comments and blank lines ignored,
//   - git:REPO@BASE..TIP, the commits of a local repository's range as git
//     format-patch writes them (a series kept as a branch), and
//     git:REPO@BASE..TIP#N, the Nth of them.
func ExpandPatches(paths []string) ([]Patch, error) {
	var stack []Patch
	for _, p := range paths {
		ps, err := expandPatch(p)
		if err != nil {
			return nil, err
		}
		stack = append(stack, ps...)
	}
	return stack, nil
}

var memberRef = regexp.MustCompile(`^(.+)#([0-9]+)$`)

func expandPatch(path string) ([]Patch, error) {
	if strings.HasPrefix(path, gitRangePrefix) {
		return readGitRange(path)
	}
	st, err := os.Stat(path)
	if err != nil {
		if m := memberRef.FindStringSubmatch(path); m != nil {
			if fi, err := os.Stat(m[1]); err == nil && fi.Mode().IsRegular() {
				ps, err := readPatchFile(m[1])
				if err != nil {
					return nil, err
				}
				n, _ := strconv.Atoi(m[2])
				if n < 1 || n > len(ps) {
					return nil, fmt.Errorf("patch %s: %s holds %d patch(es), there is no #%d", path, filepath.Base(m[1]), len(ps), n)
				}
				return ps[n-1 : n], nil
			}
		}
		if os.IsNotExist(err) {
			return nil, fmt.Errorf("patch %s: no such file", path)
		}
		return nil, fmt.Errorf("patch %s: %w", path, err)
	}
	switch {
	case st.IsDir():
		return readPatchDir(path)
	case isSeries(path):
		return readSeries(path)
	default:
		return readPatchFile(path)
	}
}

func isSeries(path string) bool {
	base := filepath.Base(path)
	return base == "series" || strings.HasSuffix(base, ".series")
}

var patchExts = []string{".patch", ".diff", ".mbx", ".mbox"}

func readPatchDir(dir string) ([]Patch, error) {
	if _, err := os.Stat(filepath.Join(dir, "series")); err == nil {
		return readSeries(filepath.Join(dir, "series"))
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("patch directory %s: %w", dir, err)
	}
	var names []string
	for _, e := range entries {
		for _, ext := range patchExts {
			if strings.HasSuffix(e.Name(), ext) && !e.IsDir() {
				names = append(names, e.Name())
				break
			}
		}
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("patch directory %s: no *.patch, *.diff, *.mbx or *.mbox files (and no quilt series file)", dir)
	}
	sort.Strings(names)
	var stack []Patch
	for _, n := range names {
		ps, err := readPatchFile(filepath.Join(dir, n))
		if err != nil {
			return nil, err
		}
		stack = append(stack, ps...)
	}
	return stack, nil
}

// readSeries reads a quilt series file: one patch per line, relative to the
// file, with an optional -p1; # starts a comment.
func readSeries(path string) ([]Patch, error) {
	data, err := safefile.ReadFile(path, safefile.SmallCap)
	if err != nil {
		return nil, fmt.Errorf("patch series %s: %w", path, err)
	}
	var stack []Patch
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if i := strings.Index(line, "#"); i >= 0 && (i == 0 || line[i-1] == ' ' || line[i-1] == '\t') {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		for _, opt := range f[1:] {
			if opt != "-p1" && opt != "-p" && opt != "1" {
				return nil, fmt.Errorf("%s:%d: %s: option %q not supported (patches apply with -p1)", path, n, f[0], opt)
			}
		}
		p := f[0]
		if !filepath.IsAbs(p) {
			p = filepath.Join(filepath.Dir(path), p)
		}
		fi, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %s: no such file", path, n, f[0])
		}
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("%s:%d: %s: not a patch file", path, n, f[0])
		}
		ps, err := readPatchFile(p)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, n, err)
		}
		stack = append(stack, ps...)
	}
	if len(stack) == 0 {
		return nil, fmt.Errorf("patch series %s lists no patches", path)
	}
	return stack, nil
}

// mboxFrom is the separator line of an mbox: git format-patch writes
// "From <commit> Mon Sep 17 00:00:00 2001", mail clients "From <addr> <date>".
var mboxFrom = regexp.MustCompile(`^From \S+ +(Mon|Tue|Wed|Thu|Fri|Sat|Sun) `)

// coverLetter matches the subject of a series' mail 0.
var coverLetter = regexp.MustCompile(`\[[^\]]*\b0+/[0-9]+\]`)

// readPatchFile reads a diff, a mail or an mbox of mails, like git am:
// every mail that carries a diff, in order.
func readPatchFile(path string) ([]Patch, error) {
	data, err := safefile.ReadFile(path, safefile.PatchCap)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, fmt.Errorf("patch %s: no such file", path)
		}
		return nil, fmt.Errorf("patch %s: %w", path, err)
	}
	mbox := strings.HasSuffix(path, ".mbx") || strings.HasSuffix(path, ".mbox")
	return parsePatches(path, data, mbox)
}

// parsePatches splits data, read from path, into its patches: the mails of
// an mbox, or one patch.
func parsePatches(path string, data []byte, mbox bool) ([]Patch, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		if mbox {
			return nil, fmt.Errorf("patch %s: an mbox with zero mails (the file is empty)", path)
		}
		return nil, fmt.Errorf("patch %s: the file is empty", path)
	}
	mails := splitMbox(data)
	if mails == nil { // not an mbox: one patch
		if !hasDiff(data) {
			if mbox {
				return nil, fmt.Errorf(`patch %s: an mbox with zero mails (no "From <id> <date>" separator line and no diff)`, path)
			}
			return nil, fmt.Errorf("patch %s: no diff in it (neither a patch nor a mail carrying one)", path)
		}
		return []Patch{{File: path, Index: 1, Count: 1, Subject: subjectOr(data, path), Data: data}}, nil
	}
	var stack []Patch
	for i, m := range mails {
		subj := mailSubject(m)
		if !hasDiff(m) {
			if coverLetter.MatchString(subj) {
				continue
			}
			return nil, fmt.Errorf("patch %s: mail %d of %d (%q) has no diff (git am would stop here too)", path, i+1, len(mails), subj)
		}
		stack = append(stack, Patch{File: path, Subject: subj, Data: m})
	}
	if len(stack) == 0 {
		return nil, fmt.Errorf("patch %s: an mbox with zero mails that carry a patch (%d mail(s), none with a diff)", path, len(mails))
	}
	if len(stack) == 1 && len(mails) == 1 {
		stack[0].Data = data // the whole file, so a one-mail file keys like a plain patch
	}
	for i := range stack {
		stack[i].Index, stack[i].Count = i+1, len(stack)
		if stack[i].Subject == "" {
			stack[i].Subject = stack[i].Name()
		}
	}
	return stack, nil
}

// splitMbox splits an mbox on its "From " separator lines; nil when data
// does not start (after blank lines) with one.
func splitMbox(data []byte) [][]byte {
	var starts []int
	off := 0
	leading := true
	for off < len(data) {
		end := bytes.IndexByte(data[off:], '\n')
		next := len(data)
		if end >= 0 {
			next = off + end + 1
		}
		line := data[off:next]
		if mboxFrom.Match(line) {
			starts = append(starts, off)
		} else if leading && len(bytes.TrimSpace(line)) > 0 {
			return nil
		}
		if len(starts) > 0 {
			leading = false
		}
		off = next
	}
	if len(starts) == 0 {
		return nil
	}
	mails := make([][]byte, len(starts))
	for i, s := range starts {
		e := len(data)
		if i+1 < len(starts) {
			e = starts[i+1]
		}
		mails[i] = data[s:e]
	}
	return mails
}

var (
	gitDiffLine = regexp.MustCompile(`(?m)^diff --git `)
	oldFileLine = regexp.MustCompile(`(?m)^(---|\*\*\*) \S`)
	newFileLine = regexp.MustCompile(`(?m)^\+\+\+ \S`)
)

func hasDiff(b []byte) bool {
	return gitDiffLine.Match(b) || (oldFileLine.Match(b) && newFileLine.Match(b))
}

// mailSubject decodes the Subject: of a mail (folded, RFC 2047); "" when
// the text has no mail header.
func mailSubject(m []byte) string {
	if mboxFrom.Match(m) {
		if i := bytes.IndexByte(m, '\n'); i >= 0 {
			m = m[i+1:]
		}
	}
	msg, err := mail.ReadMessage(bytes.NewReader(m))
	if err != nil {
		return ""
	}
	s := msg.Header.Get("Subject")
	if d, err := new(mime.WordDecoder).DecodeHeader(s); err == nil {
		s = d
	}
	return strings.Join(strings.Fields(s), " ")
}

func subjectOr(data []byte, path string) string {
	if s := mailSubject(data); s != "" {
		return s
	}
	return filepath.Base(path)
}

var (
	gitHeader  = regexp.MustCompile(`^diff --git a/(\S+) b/(\S+)`)
	fileHeader = regexp.MustCompile(`^(?:---|\+\+\+|\*\*\*) ([^\t\n]+)`)
	renameLine = regexp.MustCompile(`^(?:rename|copy) (?:from|to) (.+)$`)
)

// touchedPaths lists the tree-relative paths (after -p1) a patch may
// touch. It may list too many (a removed line that starts with "-- "), never
// on purpose too few; the dry run of patch(1) is the final word.
func touchedPaths(data []byte) []string {
	seen := map[string]bool{}
	var out []string
	add := func(p string, strip bool) {
		p = strings.TrimSpace(p)
		if p == "/dev/null" || p == "" {
			return
		}
		if strip {
			_, rest, ok := strings.Cut(p, "/")
			if !ok {
				return
			}
			p = rest
		}
		p = filepath.Clean(p)
		if p == "." || filepath.IsAbs(p) || p == ".." || strings.HasPrefix(p, "../") || seen[p] {
			return
		}
		seen[p] = true
		out = append(out, p)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Text()
		if m := gitHeader.FindStringSubmatch(line); m != nil {
			add("a/"+m[1], true)
			add("b/"+m[2], true)
		} else if m := fileHeader.FindStringSubmatch(line); m != nil {
			add(m[1], true)
		} else if m := renameLine.FindStringSubmatch(line); m != nil {
			add(m[1], false)
		}
	}
	return out
}
