package minimize

import (
	"fmt"
	"os"
	"path/filepath"

	"gopkg.in/yaml.v3"

	"patchbay/casespec"
	"patchbay/harness"
)

// CaseFile is the name of the minimized case in its folder.
const CaseFile = "case.yaml"

// caseYAML is c reduced to one variant with workload w: its patch stack
// expanded to absolute paths, fragments absolute, so the file loads from
// any folder with the normal loader and builds the same kernel.
func caseYAML(c *harness.Case, variant string, w casespec.WorkloadSpec) ([]byte, error) {
	v, ok := c.Variants[variant]
	if !ok {
		return nil, fmt.Errorf("%s: no variant %q", c.File, variant)
	}
	if c.Workload.Kind != casespec.WorkloadPatchbay {
		return nil, fmt.Errorf("%s: workload.kind %s: minimize shrinks the pbguest workload only", c.File, c.Workload.Kind)
	}
	patches, err := c.PatchStack(variant)
	if err != nil {
		return nil, err
	}
	m := *c
	m.Name = c.Name + "-min"
	m.Question = fmt.Sprintf("The smallest workload found by patchbay minimize that still fails variant %s of %s (%s).", variant, c.Name, c.File)
	m.Kernel.Fragments = nil
	for _, f := range c.Kernel.Fragments {
		m.Kernel.Fragments = append(m.Kernel.Fragments, c.Path(f))
	}
	m.Workload = w
	m.Baseline = variant
	m.Variants = map[string]casespec.Variant{variant: {Description: v.Description, Patches: patches, Expect: v.Expect}}
	return yaml.Marshal(&m)
}

// validator checks candidates with the normal loader, as if written in dir.
func validator(c *harness.Case, variant, dir string) func(w casespec.WorkloadSpec) error {
	return func(w casespec.WorkloadSpec) error {
		data, err := caseYAML(c, variant, w)
		if err != nil {
			return err
		}
		_, err = harness.ParseCase(filepath.Join(dir, CaseFile), data)
		return err
	}
}

// WriteCase writes dir/case.yaml (and case.local.yaml with the input values
// the session used, when the case has inputs) and loads it back with the
// normal loader.
func WriteCase(c *harness.Case, variant string, w casespec.WorkloadSpec, dir string) (*harness.Case, error) {
	data, err := caseYAML(c, variant, w)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, CaseFile)
	if in := c.InputValues(); len(in) > 0 {
		local, err := yaml.Marshal(map[string]any{"inputs": in})
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(harness.LocalFile(path), local, 0o644); err != nil {
			return nil, err
		}
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return nil, err
	}
	return harness.LoadCase(path)
}
