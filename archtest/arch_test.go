package archtest

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// goList runs `go list` in the module and returns its lines.
func goList(t *testing.T, args ...string) []string {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go is not on PATH: cannot list package dependencies")
	}
	cmd := exec.Command("go", append([]string{"list"}, args...)...)
	cmd.Dir = moduleRoot(t)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return strings.Fields(string(out))
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(filepath.Join(dir, "go.mod")); err != nil || !strings.HasPrefix(string(data), "module patchbay\n") {
		t.Fatalf("%s is not the patchbay module root: %v", dir, err)
	}
	return dir
}

// forbidden reports the dependencies of pkg that are one of bad or inside
// one of them (bad/...).
func forbidden(t *testing.T, pkg string, bad []string) []string {
	var hits []string
	for _, dep := range goList(t, "-deps", pkg) {
		for _, b := range bad {
			if dep == b || strings.HasPrefix(dep, b+"/") {
				hits = append(hits, dep)
			}
		}
	}
	return hits
}

// The packages that build kernels, make images, boot VMs, run the guest
// or orchestrate runs.
var machinery = []string{"patchbay/harness", "patchbay/vm", "patchbay/kernel", "patchbay/guest", "patchbay/images"}

// Records are data: report renders them without pulling in the machinery
// that produced them (issue 18), and the leaves stay leaves.
func TestRecordConsumersImportNoMachinery(t *testing.T) {
	for _, pkg := range []string{"patchbay/report", "patchbay/record", "patchbay/casespec"} {
		if hits := forbidden(t, pkg, machinery); len(hits) > 0 {
			t.Errorf("%s depends on %s", pkg, strings.Join(hits, ", "))
		}
	}
	// The workload packages drive the guest through an interface, not
	// through vm, and know nothing of the runner.
	for _, pkg := range []string{"patchbay/workload/fio", "patchbay/workload/iomapcheck", "patchbay/workload/guestcmd"} {
		if hits := forbidden(t, pkg, []string{"patchbay/harness", "patchbay/vm", "patchbay/kernel", "patchbay/images"}); len(hits) > 0 {
			t.Errorf("%s depends on %s", pkg, strings.Join(hits, ", "))
		}
	}
}

// The check itself can fail: harness does depend on vm.
func TestForbiddenSeesMachinery(t *testing.T) {
	if hits := forbidden(t, "patchbay/harness", []string{"patchbay/vm"}); len(hits) == 0 {
		t.Fatal("harness's dependencies do not include patchbay/vm: the dependency check is blind")
	}
}

// nonTestLines counts the lines of the non-test .go files of each package
// directory under root (testdata and hidden directories skipped).
func nonTestLines(root string) (map[string]int, int, error) {
	per := map[string]int{}
	total := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != root && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		n := bytes.Count(data, []byte("\n"))
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		per[rel] += n
		total += n
		return nil
	})
	return per, total, err
}

// No package holds more than a quarter of the code (issue 18): a reader
// looking for one job should not have to know one package's everything.
func TestNoPackageHoldsAQuarter(t *testing.T) {
	per, total, err := nonTestLines(moduleRoot(t))
	if err != nil {
		t.Fatal(err)
	}
	if total < 1000 {
		t.Fatalf("counted %d non-test lines in %d packages: the walk missed the code", total, len(per))
	}
	var dirs []string
	for d := range per {
		dirs = append(dirs, d)
	}
	sort.Slice(dirs, func(i, j int) bool { return per[dirs[i]] > per[dirs[j]] })
	for _, d := range dirs {
		if 4*per[d] > total {
			t.Errorf("%s: %d of %d non-test lines (%.1f%%), more than a quarter", d, per[d], total, 100*float64(per[d])/float64(total))
		}
	}
	if len(dirs) > 0 {
		t.Logf("largest: %s %d of %d lines (%.1f%%)", dirs[0], per[dirs[0]], total, 100*float64(per[dirs[0]])/float64(total))
	}
}

// The counter counts: a package of two files, one a test, counts only the
// other's lines.
func TestNonTestLinesCounts(t *testing.T) {
	root := t.TempDir()
	for name, text := range map[string]string{
		"a/a.go":            "package a\n\nfunc A() {}\n",
		"a/a_test.go":       "package a\n\n\n\n\n",
		"b/b.go":            "package b\n",
		"b/testdata/x/x.go": "package x\n\n\n",
		"c/.hidden/h.go":    "package h\n",
		"a/README.md":       "text\n",
	} {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	per, total, err := nonTestLines(root)
	if err != nil {
		t.Fatal(err)
	}
	if per["a"] != 3 || per["b"] != 1 || len(per) != 2 || total != 4 {
		t.Errorf("counted %v, total %d: want a 3, b 1, total 4", per, total)
	}
}
