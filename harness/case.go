// Package harness loads cases, plans runs, runs them in VMs and judges them.
package harness

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"patchbay/casespec"
	"patchbay/images"
	"patchbay/kernel"

	"patchbay/safefile"
	"patchbay/workload/guestcmd"
)

// Case is one folder under cases/: a question, a kernel, a workload and the
// variants to compare.
type Case struct {
	Name       string                      `yaml:"name"`
	Question   string                      `yaml:"question"`
	Inputs     map[string]Input            `yaml:"inputs"` // what the user brings (see Input)
	Kernel     casespec.KernelSpec         `yaml:"kernel"`
	VM         casespec.VMSpec             `yaml:"vm"`
	Filesystem casespec.FilesystemSpec     `yaml:"filesystem"`
	Workload   casespec.WorkloadSpec       `yaml:"workload"`
	Baseline   string                      `yaml:"baseline"`
	Variants   map[string]casespec.Variant `yaml:"variants"`

	Dir  string `yaml:"-"` // folder of case.yaml
	File string `yaml:"-"` // path of case.yaml

	doc   *yaml.Node        // the parsed document, for the lines of later errors
	bound map[string]string // input values (see Input)
}

var variantName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)

// caseName is a case name that is safe as one directory of a path.
var caseName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$`)

// Upper bounds, so that no size or duration overflows where it is
// multiplied or converted (files*blocks*4KiB, MiB<<20, seconds).
const (
	maxMemoryMB    = 1 << 20 // 1 TiB
	maxScratchMB   = 1 << 20 // 1 TiB
	maxBlocks      = 1 << 24 // 64 GiB per file
	maxDuration    = 7 * 24 * time.Hour
	maxBootTimeout = time.Hour
)

// ImageRecipe is the guest image this case's VM boots: the stock recipe
// plus the case's packages (vm.packages).
func (c *Case) ImageRecipe() images.Recipe {
	return images.DefaultRecipe().WithPackages(c.VM.Packages...)
}

// LoadCase reads and validates a case from a folder or a case.yaml path.
// Every error names the file, the line and the field.
func LoadCase(path string) (*Case, error) { return LoadCaseWith(path, nil) }

// LoadCaseWith is LoadCase with input values (see Input) from the command
// line, which override the case's local file.
func LoadCaseWith(path string, inputs map[string]string) (*Case, error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		path = filepath.Join(path, "case.yaml")
	}
	data, err := safefile.ReadFile(path, safefile.SmallCap)
	if err != nil {
		return nil, fmt.Errorf("case: %w", err)
	}
	return ParseCaseWith(path, data, inputs)
}

// ParseCase parses case YAML; path is used for error messages, to resolve
// relative patch and fragment paths and to find the local file of inputs.
func ParseCase(path string, data []byte) (*Case, error) { return ParseCaseWith(path, data, nil) }

// ParseCaseWith is ParseCase with input values from the command line.
func ParseCaseWith(path string, data []byte, inputs map[string]string) (*Case, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("%s: %s", path, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	c := &Case{}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil {
		var te *yaml.TypeError
		msgs := []string{strings.TrimPrefix(err.Error(), "yaml: ")}
		if errors.As(err, &te) {
			msgs = te.Errors
		}
		for i, m := range msgs {
			msgs[i] = withField(path, &root, m)
		}
		return nil, errors.New(strings.Join(msgs, "\n"))
	}
	c.File = path
	c.doc = &root
	// Absolute, because kernel builds run in other directories.
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c.Dir = dir
	zeros := explicitZeros(c, &root)
	c.applyDefaults()
	if err := c.bindInputs(inputs); err != nil {
		return nil, err
	}
	if err := c.validate(&root, zeros); err != nil {
		return nil, err
	}
	return c, nil
}

var yamlLine = regexp.MustCompile(`^line ([0-9]+): (.*)$`)

// withField turns yaml's "line N: msg" into "FILE:N: FIELD: msg", the form
// of every other case error.
func withField(path string, root *yaml.Node, msg string) string {
	m := yamlLine.FindStringSubmatch(msg)
	if m == nil {
		return path + ": " + msg
	}
	line, _ := strconv.Atoi(m[1])
	if f := fieldAtLine(root, line, ""); f != "" {
		return fmt.Sprintf("%s:%d: %s: %s", path, line, f, m[2])
	}
	return fmt.Sprintf("%s:%d: %s", path, line, m[2])
}

// fieldAtLine finds the dotted path of the mapping value on line.
func fieldAtLine(n *yaml.Node, line int, prefix string) string {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			if f := fieldAtLine(c, line, prefix); f != "" {
				return f
			}
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			name := k.Value
			if prefix != "" {
				name = prefix + "." + k.Value
			}
			if v.Line == line && v.Kind == yaml.ScalarNode {
				return name
			}
			if f := fieldAtLine(v, line, name); f != "" {
				return f
			}
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			name := fmt.Sprintf("%s.%d", prefix, i)
			if c.Line == line && c.Kind == yaml.ScalarNode {
				return name
			}
			if f := fieldAtLine(c, line, name); f != "" {
				return f
			}
		}
	}
	return ""
}

// defaulted are the fields whose zero value means "use the default": an
// explicit 0 there would be silently replaced, so it is refused instead.
var defaulted = []struct {
	field string
	zero  func(c *Case) bool
	def   string
}{
	{"vm.memory_mb", func(c *Case) bool { return c.VM.MemoryMB == 0 }, "1024"},
	{"vm.cpus", func(c *Case) bool { return c.VM.CPUs == 0 }, "2"},
	{"vm.scratch_mb", func(c *Case) bool { return c.VM.ScratchMB == 0 }, "512"},
	{"vm.boot_timeout", func(c *Case) bool { return c.VM.BootTimeout == 0 }, "3m"},
	{"filesystem.mkfs", func(c *Case) bool { return c.Filesystem.Mkfs == "" }, "mkfs.ext4 -F -q"},
	{"workload.files", func(c *Case) bool { return c.Workload.Files == 0 }, "4"},
	{"workload.blocks", func(c *Case) bool { return c.Workload.Blocks == 0 }, "256"},
	{"workload.defrag.range_blocks", func(c *Case) bool { return c.Workload.Defrag.RangeBlocks == 0 }, "16"},
	{"workload.duration", func(c *Case) bool { return c.Workload.Duration == 0 }, "20s"},
}

// explicitZeros lists the defaulted fields the document sets to zero (or
// to an empty string): present in the YAML, zero once decoded.
func explicitZeros(c *Case, root *yaml.Node) []string {
	var out []string
	for _, d := range defaulted {
		if d.zero(c) && nodeAt(root, d.field) != nil {
			out = append(out, d.field)
		}
	}
	return out
}

// defaultOf is the default of a defaulted field, for error messages.
func defaultOf(field string) string {
	for _, d := range defaulted {
		if d.field == field {
			return d.def
		}
	}
	return ""
}

// nodeAt returns the value node of a dotted mapping path, nil when the
// document does not set it.
func nodeAt(doc *yaml.Node, field string) *yaml.Node {
	n := doc
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	for _, part := range strings.Split(field, ".") {
		if n.Kind != yaml.MappingNode {
			return nil
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == part {
				next = n.Content[i+1]
			}
		}
		if next == nil {
			return nil
		}
		n = next
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil // "field:" with no value is the same as leaving it out
	}
	return n
}

func (c *Case) applyDefaults() {
	setInt := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	setInt(&c.VM.MemoryMB, 1024)
	setInt(&c.VM.CPUs, 2)
	setInt(&c.VM.ScratchMB, 512)
	if c.VM.BootTimeout == 0 {
		c.VM.BootTimeout = casespec.Duration(3 * time.Minute)
	}
	if c.Filesystem.Mkfs == "" {
		c.Filesystem.Mkfs = "mkfs.ext4 -F -q"
	}
	setInt(&c.Workload.Files, 4)
	setInt(&c.Workload.Blocks, 256)
	setInt(&c.Workload.Defrag.RangeBlocks, 16)
	if c.Workload.Kind == "" {
		c.Workload.Kind = casespec.WorkloadPatchbay
	}
	if c.Workload.Defrag.Tool == "" {
		c.Workload.Defrag.Tool = casespec.DefragIoctl
	}
	if c.Workload.Duration == 0 {
		c.Workload.Duration = casespec.Duration(20 * time.Second)
	}
}

// validate checks values that YAML types cannot, reporting the line of the
// offending field.
func (c *Case) validate(root *yaml.Node, zeros []string) error {
	var errs []string
	bad := func(field, msg string) {
		errs = append(errs, fmt.Sprintf("%s:%d: %s: %s", c.File, lineOf(root, field), field, msg))
	}
	for _, f := range zeros {
		bad(f, fmt.Sprintf("an explicit 0 or empty value means nothing here and is refused (leave the field out for the default, %s)", defaultOf(f)))
	}
	if c.Name == "" {
		bad("name", "missing")
	} else if !caseName.MatchString(c.Name) || strings.Contains(c.Name, "..") {
		bad("name", fmt.Sprintf("%q: want letters, digits, '.', '_' or '-', starting with a letter or digit, no '..' (results go under results/<name>/)", c.Name))
	}
	for name := range c.Inputs {
		if !variantName.MatchString(name) {
			bad("inputs."+name, "name must be lower case letters, digits, '.', '_' or '-'")
		}
	}
	if c.Kernel.Source == "" {
		bad("kernel.source", "missing (e.g. debian:linux-source-6.12)")
	} else if name, ok := inputRef(c.Kernel.Source); ok {
		if _, declared := c.Inputs[name]; !declared {
			bad("kernel.source", fmt.Sprintf("input %q is not declared under inputs: (%s)", name, c.inputList()))
		}
	} else if err := kernel.CheckGitRevisions(c.Kernel.Source); err != nil {
		bad("kernel.source", err.Error())
	}
	for i, f := range c.Kernel.Fragments {
		if _, err := os.Stat(c.Path(f)); err != nil {
			bad(fmt.Sprintf("kernel.fragments.%d", i), fmt.Sprintf("%s: no such file", f))
		}
	}
	if c.VM.MemoryMB < 256 || c.VM.MemoryMB > maxMemoryMB {
		bad("vm.memory_mb", fmt.Sprintf("must be 256..%d", maxMemoryMB))
	}
	if b := c.VM.BootTimeout.D(); b <= 0 || b > maxBootTimeout {
		bad("vm.boot_timeout", fmt.Sprintf("must be positive and at most %s", maxBootTimeout))
	}
	if c.VM.CPUs < 1 || c.VM.CPUs > 64 {
		bad("vm.cpus", "must be 1..64")
	}
	if c.VM.ScratchMB < 64 || c.VM.ScratchMB > maxScratchMB {
		bad("vm.scratch_mb", fmt.Sprintf("must be 64..%d (1 TiB)", maxScratchMB))
	}
	for i, p := range c.VM.Packages {
		if !debianPackage.MatchString(p) {
			bad(fmt.Sprintf("vm.packages.%d", i), fmt.Sprintf("%q is not a Debian package name", p))
		}
	}
	c.validateWorkloadKind(bad)
	c.validatePowerCut(bad)
	w := c.Workload
	if w.Duration.D() <= 0 || w.Duration.D() > maxDuration {
		bad("workload.duration", fmt.Sprintf("must be positive and at most %s", maxDuration))
	}
	if w.Files < 1 || w.Files > 1000 {
		bad("workload.files", "must be 1..1000")
	}
	if w.Blocks < 1 || w.Blocks > maxBlocks {
		bad("workload.blocks", fmt.Sprintf("must be 1..%d", maxBlocks))
	}
	if w.MmapWriters < 0 || w.PwriteWriters < 0 || w.Defrag.Workers < 0 {
		bad("workload", "worker counts cannot be negative")
	}
	if w.MmapWriters+w.PwriteWriters == 0 && w.Kind != casespec.WorkloadFio {
		bad("workload.mmap_writers", "need at least one mmap or pwrite writer")
	}
	if w.Defrag.RangeBlocks < 1 {
		bad("workload.defrag.range_blocks", "must be positive")
	}
	if w.Epochs < 0 || w.Epochs > w.Files {
		bad("workload.epochs", fmt.Sprintf("must be in 1..files (%d)", w.Files))
	}
	if w.FsyncEvery < 0 || w.FdatasyncEvery < 0 || w.Defrag.EvictOneIn < 0 {
		bad("workload", "fsync_every, fdatasync_every and defrag.evict_one_in cannot be negative")
	}
	switch w.Defrag.Donor {
	case "", "fresh", "shared", "inplace":
	default:
		bad("workload.defrag.donor", fmt.Sprintf("%q: want fresh (default), shared or inplace", w.Defrag.Donor))
	}
	switch w.Defrag.Tool {
	case casespec.DefragIoctl:
	case casespec.DefragE4defrag:
		if w.Defrag.Donor != "" || w.Defrag.EvictOneIn != 0 || w.Defrag.Rejournal {
			bad("workload.defrag.tool", "e4defrag makes its own donors: donor, evict_one_in and rejournal are for the ioctl tool")
		}
		for name, v := range c.Variants {
			e := v.Expect
			if e.MinMoved != nil || e.MaxMoved != nil || e.MinRefusedEOPNOTSUPP != nil || e.MinTransitions != nil || e.MinFilesMoved != nil {
				bad("variants."+name+".expect", "workload.defrag.tool e4defrag: moves and refusals are the tool's claims, not counted results; expect them only with the ioctl tool")
			}
		}
	default:
		bad("workload.defrag.tool", fmt.Sprintf("%q: want ioctl (default) or e4defrag", w.Defrag.Tool))
	}
	need := int64(w.Files) * int64(w.Blocks) * 4096 * 3 // files + donors + slack
	if need > int64(c.VM.ScratchMB)<<20 {
		bad("workload.blocks", fmt.Sprintf("files*blocks*4KiB*3 = %d MiB does not fit vm.scratch_mb = %d", need>>20, c.VM.ScratchMB))
	}
	if err := guestcmd.CheckMkfs(c.Filesystem.Mkfs); err != nil {
		bad("filesystem.mkfs", err.Error())
	}
	if err := guestcmd.CheckMountOptions(c.Filesystem.MountOptions); err != nil {
		bad("filesystem.mount_options", err.Error())
	}
	if c.Filesystem.JournalData && !strings.Contains(c.Filesystem.MountOptions, "nodelalloc") {
		bad("filesystem.journal_data", "per-inode data journaling only takes effect with mount option nodelalloc")
	}
	if c.Filesystem.RequireLargeFolios && !c.Filesystem.CheckBufferedIomap {
		bad("filesystem.require_large_folios", "needs filesystem.check_buffered_iomap: true (its tracefs counters count the folios)")
	}
	if len(c.Variants) == 0 {
		bad("variants", "at least one variant is needed")
	}
	for _, name := range c.VariantNames() {
		v := c.Variants[name]
		if !variantName.MatchString(name) {
			bad("variants."+name, "name must be lower case letters, digits, '.', '_' or '-'")
		}
		for i, r := range v.Replace {
			if r.With == "" {
				bad(fmt.Sprintf("variants.%s.replace.%d", name, i), "needs match: and with:")
			}
		}
		// A stack with unset inputs cannot be checked yet: its drop and
		// replace select from patches nobody has given. Running it says so.
		if len(c.unsetInputs(name, map[string]bool{})) > 0 {
			c.checkInputRefs(name, bad)
			continue
		}
		// Each variant reports the errors of its own fields; one whose base
		// is broken fails with it, reported there.
		_, serrs := c.stack(name, nil)
		for _, e := range serrs {
			if e.variant == name {
				errs = append(errs, c.stackErrors([]stackError{e}).Error())
			}
		}
	}
	if c.Baseline != "" {
		if _, ok := c.Variants[c.Baseline]; !ok {
			bad("baseline", fmt.Sprintf("%q is not a variant", c.Baseline))
		}
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "\n"))
	}
	return nil
}

// PatchStack returns the expanded patch stack of a variant, in order: one
// entry per patch, a file path, or FILE#N for the Nth patch of an mbox
// (kernel.Spec.Patches takes both). Errors name case.yaml, the line and the
// field.
func (c *Case) PatchStack(variant string) ([]string, error) {
	if _, ok := c.Variants[variant]; !ok {
		return nil, fmt.Errorf("%s: no variant %q (have %s)", c.File, variant, strings.Join(c.VariantNames(), ", "))
	}
	stack, errs := c.stack(variant, nil)
	if len(errs) > 0 {
		return nil, c.stackErrors(errs)
	}
	refs := make([]string, len(stack))
	for i, p := range stack {
		refs[i] = p.Ref()
	}
	return refs, nil
}

// stackError is an error in a variant's patch fields.
type stackError struct {
	variant string // whose field it is
	field   string // dotted path, for lineOf
	msg     string
}

func (c *Case) stackErrors(errs []stackError) error {
	var msgs []string
	for _, e := range errs {
		msgs = append(msgs, fmt.Sprintf("%s:%d: %s: %s", c.File, c.line(e.field), e.field, e.msg))
	}
	return errors.New(strings.Join(msgs, "\n"))
}

func (c *Case) line(field string) int {
	if c.doc == nil {
		return 0
	}
	return lineOf(c.doc, field)
}

// stack expands a variant's patch stack; chain holds the variants whose base
// led here, to find cycles.
func (c *Case) stack(name string, chain []string) ([]kernel.Patch, []stackError) {
	v := c.Variants[name]
	field := func(f string, args ...any) string {
		return fmt.Sprintf("variants.%s.", name) + fmt.Sprintf(f, args...)
	}
	var errs []stackError
	bad := func(f, msg string) { errs = append(errs, stackError{name, f, msg}) }
	expand := func(f, p string) []kernel.Patch {
		what := "" // "input NAME: " when p names an input
		if name, ok := inputRef(p); ok {
			val, msg := c.resolveInput(p)
			if msg != "" {
				bad(f, msg)
				return nil
			}
			what, p = "input "+name+": ", val
		}
		path := c.Path(p)
		isRange := strings.HasPrefix(p, "git:")
		if isRange {
			// A commit range; a relative repository is from the case folder.
			var err error
			if path, err = normalizeInput(c.Dir, p); err != nil {
				bad(f, what+err.Error())
				return nil
			}
		}
		ps, err := kernel.ExpandPatches([]string{path})
		if err != nil {
			if _, serr := os.Stat(path); serr != nil && !isRange && !strings.Contains(p, "#") {
				bad(f, what+p+": no such file")
			} else {
				bad(f, what+err.Error())
			}
		}
		return ps
	}

	var stack []kernel.Patch
	if v.Base != "" {
		if v.Base == name {
			return nil, []stackError{{name, field("base"), "a variant cannot be its own base"}}
		}
		chain = append(slices.Clone(chain), name)
		if i := slices.Index(chain, v.Base); i >= 0 {
			// Reported by the variant where the cycle closes on itself.
			cycle := append(chain[i:], v.Base)
			return nil, []stackError{{v.Base, fmt.Sprintf("variants.%s.base", v.Base), "cycle: " + strings.Join(cycle, " -> ")}}
		}
		if _, ok := c.Variants[v.Base]; !ok {
			return nil, []stackError{{name, field("base"), fmt.Sprintf("%q is not a variant (have %s)", v.Base, strings.Join(c.VariantNames(), ", "))}}
		}
		base, berrs := c.stack(v.Base, chain)
		if len(berrs) > 0 {
			return nil, berrs
		}
		stack = append(stack, base...)
	}
	for i, p := range v.Patches {
		stack = append(stack, expand(field("patches.%d", i), p)...)
	}
	if len(errs) > 0 {
		return nil, errs
	}

	// Drop and replace both select in the stack as it is here.
	edit := make([][]kernel.Patch, len(stack)) // nil: keep; empty: drop
	edited := make([]string, len(stack))
	for i, sel := range v.Drop {
		f := field("drop.%d", i)
		if j, msg := selectPatch(stack, sel); msg != "" {
			bad(f, msg)
		} else if edited[j] != "" {
			bad(f, fmt.Sprintf("%s selects patch %d, already selected by %s", sel, j+1, edited[j]))
		} else {
			edit[j], edited[j] = []kernel.Patch{}, f
		}
	}
	for i, r := range v.Replace {
		f := field("replace.%d.match", i)
		j, msg := selectPatch(stack, r.Match)
		if msg != "" {
			bad(f, msg)
			continue
		}
		if edited[j] != "" {
			bad(f, fmt.Sprintf("%s selects patch %d, already selected by %s", r.Match, j+1, edited[j]))
			continue
		}
		if r.With == "" {
			continue // reported by validate
		}
		with := expand(field("replace.%d.with", i), r.With)
		edit[j], edited[j] = with, f
	}
	var out []kernel.Patch
	for i, p := range stack {
		if edit[i] == nil {
			out = append(out, p)
		} else {
			out = append(out, edit[i]...)
		}
	}
	for i, p := range v.Add {
		out = append(out, expand(field("add.%d", i), p)...)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return out, nil
}

// selectPatch finds the one patch sel names; msg says why not.
func selectPatch(stack []kernel.Patch, sel casespec.PatchSel) (int, string) {
	list := func(idx []int) string {
		var parts []string
		for _, i := range idx {
			parts = append(parts, fmt.Sprintf("%d %q", i+1, stack[i].Subject))
		}
		return strings.Join(parts, ", ")
	}
	all := make([]int, len(stack))
	for i := range all {
		all[i] = i
	}
	if sel.Index == 0 && sel.Substring == "" {
		return 0, "missing: give a 1-based index or a substring of the subject"
	}
	if sel.Index > 0 {
		if sel.Index > len(stack) {
			return 0, fmt.Sprintf("patch %d does not exist: the stack has %d patch(es)", sel.Index, len(stack))
		}
		return sel.Index - 1, ""
	}
	var hits []int
	for i, p := range stack {
		if strings.Contains(p.Subject, sel.Substring) {
			hits = append(hits, i)
		}
	}
	switch len(hits) {
	case 1:
		return hits[0], ""
	case 0:
		if len(stack) == 0 {
			return 0, fmt.Sprintf("%s matches no patch: the stack is empty", sel)
		}
		return 0, fmt.Sprintf("%s matches no patch of the stack (%s)", sel, list(all))
	default:
		return 0, fmt.Sprintf("%s matches %d patches (%s): use a longer substring or an index", sel, len(hits), list(hits))
	}
}

// Path resolves a path from the case file relative to the case folder.
func (c *Case) Path(p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(c.Dir, p)
}

// VariantNames returns the variants, baseline first, then by name.
func (c *Case) VariantNames() []string {
	names := make([]string, 0, len(c.Variants))
	for n := range c.Variants {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		if (names[i] == c.Baseline) != (names[j] == c.Baseline) {
			return names[i] == c.Baseline
		}
		return names[i] < names[j]
	})
	return names
}

// lineOf finds the line of a dotted field path (map keys, or sequence
// indexes as numbers) in a YAML document; the nearest existing parent's line
// when the field itself is absent.
func lineOf(doc *yaml.Node, field string) int {
	n := doc
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := n.Line
	for _, part := range strings.Split(field, ".") {
		var next *yaml.Node
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == part {
					line = n.Content[i].Line
					next = n.Content[i+1]
					break
				}
			}
		case yaml.SequenceNode:
			var idx int
			if _, err := fmt.Sscanf(part, "%d", &idx); err == nil && idx >= 0 && idx < len(n.Content) {
				next = n.Content[idx]
				line = next.Line
			}
		}
		if next == nil {
			return line
		}
		n = next
	}
	return line
}
