package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"patchbay/b4"
	"patchbay/kernel"

	"patchbay/safefile"
)

// Input is something a case needs from its user because the project cannot
// ship it: a kernel tree, a series mbox. A case names it as "input:NAME" in
// kernel.source or in a variant's patches, replace.with or add; the value
// comes from --input NAME=VALUE or from the case's local file
// (case.local.yaml next to case.yaml), in that order of precedence.
type Input struct {
	Description string `yaml:"description"`
	Example     string `yaml:"example"`
}

// inputPrefix marks a reference to an input in kernel.source or a patch entry.
const inputPrefix = "input:"

// inputRef returns the input name s refers to, if it is a reference.
func inputRef(s string) (string, bool) {
	name, ok := strings.CutPrefix(s, inputPrefix)
	return name, ok
}

// LocalFile is where a case's inputs can be set once per checkout:
// case.yaml -> case.local.yaml. Git ignores it.
func LocalFile(caseFile string) string {
	return strings.TrimSuffix(caseFile, filepath.Ext(caseFile)) + ".local.yaml"
}

// ParseInputFlags turns repeated --input NAME=VALUE flags into a map; relative
// paths in values are taken from the working directory.
func ParseInputFlags(flags []string) (map[string]string, error) {
	cwd, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, f := range flags {
		name, val, ok := strings.Cut(f, "=")
		if !ok || name == "" || val == "" {
			return nil, fmt.Errorf("--input %q: want NAME=VALUE (e.g. --input series=ext4-iomap.mbox)", f)
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("--input %s given twice", name)
		}
		if out[name], err = normalizeInput(cwd, val); err != nil {
			return nil, fmt.Errorf("--input %s: %w", name, err)
		}
	}
	return out, nil
}

// bindInputs sets the case's input values: the local file first, then flags
// over it. Unknown names are errors, with the file and line for the local file.
func (c *Case) bindInputs(flags map[string]string) error {
	c.bound = map[string]string{}
	local := LocalFile(c.File)
	data, err := safefile.ReadFile(local, safefile.SmallCap)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return fmt.Errorf("case local file: %w", err)
	default:
		if err := c.readLocal(local, data); err != nil {
			return err
		}
	}
	var unknown []string
	for name, val := range flags {
		if _, ok := c.Inputs[name]; !ok {
			unknown = append(unknown, name)
			continue
		}
		c.bound[name] = val
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return fmt.Errorf("--input %s: %s declares no such input (%s)", strings.Join(unknown, ", "), c.File, c.inputList())
	}
	return nil
}

func (c *Case) readLocal(path string, data []byte) error {
	var doc struct {
		Inputs yaml.Node `yaml:"inputs"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	// An empty file (io.EOF) sets nothing.
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("%s: %s", path, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	n := &doc.Inputs
	if n.Kind == 0 {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("%s:%d: inputs: want a map of input name to value", path, n.Line)
	}
	base := filepath.Dir(path)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if _, ok := c.Inputs[k.Value]; !ok {
			return fmt.Errorf("%s:%d: inputs.%s: %s declares no such input (%s)", path, k.Line, k.Value, c.File, c.inputList())
		}
		if v.Kind != yaml.ScalarNode || v.Value == "" {
			return fmt.Errorf("%s:%d: inputs.%s: want a path or a kernel source", path, v.Line, k.Value)
		}
		val, err := normalizeInput(base, v.Value)
		if err != nil {
			return fmt.Errorf("%s:%d: inputs.%s: %w", path, v.Line, k.Value, err)
		}
		c.bound[k.Value] = val
	}
	return nil
}

// normalizeInput makes the paths in an input value absolute, relative to
// base, with a leading ~ expanded: the value may be a patch path (FILE, FILE#N,
// DIR, series) or a kernel source (dir:PATH, git:PATH@REF, debian:PKG).
// b4:MSGID and lore:MSGID fetch the series with b4 am (b4.go) into an mbox.
func normalizeInput(base, val string) (string, error) {
	abs := func(p string) (string, error) {
		if p == "~" || strings.HasPrefix(p, "~/") {
			home, err := os.UserHomeDir()
			if err != nil {
				return "", fmt.Errorf("expand ~: %w", err)
			}
			p = filepath.Join(home, p[1:])
		}
		if !filepath.IsAbs(p) {
			p = filepath.Join(base, p)
		}
		return p, nil
	}
	if mbox, ok, err := b4.Input(context.Background(), val); ok {
		return mbox, err
	}
	switch kind, rest, _ := strings.Cut(val, ":"); kind {
	case "debian":
		return val, nil
	case "dir":
		p, err := abs(rest)
		return "dir:" + p, err
	case "git":
		i := strings.LastIndex(rest, "@")
		if i <= 0 {
			return "", fmt.Errorf("%q: want git:PATH@REF", val)
		}
		if err := kernel.CheckGitRevisions(val); err != nil {
			return "", fmt.Errorf("%q: %w", val, err)
		}
		p, err := abs(rest[:i])
		return "git:" + p + rest[i:], err
	}
	return abs(val)
}

// inputList names the declared inputs for error messages.
func (c *Case) inputList() string {
	if len(c.Inputs) == 0 {
		return "it declares none"
	}
	names := make([]string, 0, len(c.Inputs))
	for n := range c.Inputs {
		names = append(names, n)
	}
	sort.Strings(names)
	return "inputs: " + strings.Join(names, ", ")
}

// resolveInput returns the value of s, an input reference or not, and a
// message when it is a reference to an undeclared or unset input.
func (c *Case) resolveInput(s string) (string, string) {
	name, ok := inputRef(s)
	if !ok {
		return s, ""
	}
	in, declared := c.Inputs[name]
	if !declared {
		return "", fmt.Sprintf("input %q is not declared under inputs: (%s)", name, c.inputList())
	}
	if v, set := c.bound[name]; set {
		return v, ""
	}
	msg := fmt.Sprintf("input %q is not set: give --input %s=VALUE or set inputs.%s in %s", name, name, name, LocalFile(c.File))
	if in.Description != "" {
		msg += " (" + strings.TrimSpace(in.Description) + ")"
	}
	if in.Example != "" {
		msg += ", e.g. " + in.Example
	}
	return "", msg
}

// unsetInputs lists the inputs a variant's patch stack needs, through its
// bases, that have no value; validation of such a stack waits for them.
func (c *Case) unsetInputs(name string, seen map[string]bool) []string {
	if seen[name] {
		return nil
	}
	seen[name] = true
	v, ok := c.Variants[name]
	if !ok {
		return nil
	}
	var out []string
	check := func(s string) {
		if n, ok := inputRef(s); ok {
			if _, set := c.bound[n]; !set {
				out = append(out, n)
			}
		}
	}
	for _, p := range v.Patches {
		check(p)
	}
	for _, r := range v.Replace {
		check(r.With)
	}
	for _, p := range v.Add {
		check(p)
	}
	if v.Base != "" {
		out = append(out, c.unsetInputs(v.Base, seen)...)
	}
	return out
}

// InputValues returns the values bound to the case's inputs, for the record.
func (c *Case) InputValues() map[string]string {
	if len(c.bound) == 0 {
		return nil
	}
	out := make(map[string]string, len(c.bound))
	for k, v := range c.bound {
		out[k] = v
	}
	return out
}

// checkInputRefs reports references to undeclared inputs in a variant's
// patch fields; the rest of its stack is checked once the inputs are set.
func (c *Case) checkInputRefs(name string, bad func(field, msg string)) {
	v := c.Variants[name]
	check := func(field, s string) {
		if n, ok := inputRef(s); ok {
			if _, declared := c.Inputs[n]; !declared {
				bad(field, fmt.Sprintf("input %q is not declared under inputs: (%s)", n, c.inputList()))
			}
		}
	}
	for i, p := range v.Patches {
		check(fmt.Sprintf("variants.%s.patches.%d", name, i), p)
	}
	for i, r := range v.Replace {
		check(fmt.Sprintf("variants.%s.replace.%d.with", name, i), r.With)
	}
	for i, p := range v.Add {
		check(fmt.Sprintf("variants.%s.add.%d", name, i), p)
	}
}
