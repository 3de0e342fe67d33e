package harness

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"patchbay/casespec"
	"patchbay/record"
	"patchbay/workload/fio"
)

// TestFioRecordsJudged: fio's records (workload/fio) are judged like
// pbguest's: a clean run passes, a verify error or a bad block fails.
func TestFioRecordsJudged(t *testing.T) {
	fixture := func(name string) []byte {
		data, err := os.ReadFile(filepath.Join("../workload/fio/testdata/fio-output", name))
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	job, err := os.ReadFile("testdata/seeded-bugs/defrag.fio")
	if err != nil {
		t.Fatal(err)
	}
	rep, err := fio.ParseReport(fixture("workload-stock.json"))
	if err != nil {
		t.Fatal(err)
	}
	writers, defrag := fio.Records(rep, fio.Engines(job), 0, nil)
	rec := &record.RunRecord{Writers: writers, Defrag: defrag}
	for _, phase := range []string{"live", "dropcache", "remount"} {
		rec.Verify = append(rec.Verify, record.VerifyResult{Phase: phase, Blocks: 4096, Counts: map[string]int64{"ok": 4096}})
	}
	rec.Fsck = &record.FsckResult{Clean: true}
	one, zero := 1, 0
	Judge(rec, RunStatus{}, casespec.Expectation{MinMoved: &one, MaxBadBlocks: &zero, FsckClean: true, NoFindings: true})
	if rec.Outcome != record.Pass {
		t.Errorf("clean run: outcome %s %v, want pass", rec.Outcome, rec.Reasons)
	}

	broken := &fio.Report{Jobs: []fio.Job{
		{Name: "buffered-writer", Error: 84, Write: fio.Dir{TotalIOs: 100}, Options: map[string]any{"filename": "buffered.dat"}},
	}}
	text := []byte("crc32c: verify failed at file /mnt/scratch/fio/buffered.dat offset 8192, length 4096 (requested block: offset=8192, length=4096)\n")
	writers, defrag = fio.Records(broken, nil, 1, text)
	rec = &record.RunRecord{Writers: writers, Defrag: defrag}
	Judge(rec, RunStatus{}, casespec.Expectation{})
	if rec.Outcome != record.Fail || !strings.Contains(strings.Join(rec.Reasons, "\n"), "verify failed") {
		t.Errorf("verify error: outcome %s %v, want fail naming the verify failure", rec.Outcome, rec.Reasons)
	}

	corrupted, err := fio.ParseReport(fixture("verify-corrupted.json"))
	if err != nil {
		t.Fatal(err)
	}
	v, err := fio.VerifyResult("dropcache", corrupted, 0, fixture("verify-corrupted.txt"))
	if err != nil {
		t.Fatal(err)
	}
	rec = &record.RunRecord{Verify: []record.VerifyResult{v}}
	Judge(rec, RunStatus{}, casespec.Expectation{MaxBadBlocks: &zero})
	if rec.Outcome != record.Fail || !strings.Contains(strings.Join(rec.Reasons, "; "), "verify dropcache: 2 bad blocks") {
		t.Errorf("bad blocks: outcome %s %v, want fail on the dropcache phase", rec.Outcome, rec.Reasons)
	}
}

func TestFioCaseValidation(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"job.fio", "check.fio"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("[a]\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	base := "name: x\nkernel: {source: debian:linux-source-6.12}\nvariants: {a: {}}\n"
	for _, tc := range []struct {
		yaml, want string // want: "" for valid, else a substring of the error
	}{
		{"workload: {mmap_writers: 1}\n", ""},
		{"vm: {packages: [fio]}\nworkload: {kind: fio, fio: {job: job.fio, verify: check.fio}}\n", ""},
		{"vm: {packages: [fio]}\nfilesystem: {check_buffered_iomap: true}\nworkload: {kind: fio, fio: {job: job.fio, verify: check.fio}}\n", "filesystem.check_buffered_iomap: needs workload.kind patchbay"},
		{"vm: {packages: [fio]}\nfilesystem: {journal_data: true, mount_options: nodelalloc}\nworkload: {kind: fio, fio: {job: job.fio, verify: check.fio}}\n", "filesystem.journal_data: needs workload.kind patchbay"},
		{"workload: {kind: fio, fio: {job: job.fio, verify: check.fio}}\n", "vm.packages: workload.kind fio needs fio"},
		{"vm: {packages: [fio]}\nworkload: {kind: fio, fio: {job: job.fio}}\n", "workload.fio.verify: missing"},
		{"vm: {packages: [fio]}\nworkload: {kind: fio, fio: {job: nope.fio, verify: check.fio}}\n", "workload.fio.job: nope.fio: no such file"},
		{"workload: {kind: fiio, mmap_writers: 1}\n", `workload.kind: "fiio"`},
		{"workload: {mmap_writers: 1, fio: {job: job.fio}}\n", "workload.fio: only used with workload.kind: fio"},
		{"vm: {packages: [fio, 'Bad Name']}\nworkload: {mmap_writers: 1}\n", `vm.packages.1: "Bad Name" is not a Debian package name`},
	} {
		c, err := ParseCase(filepath.Join(dir, "case.yaml"), []byte(base+tc.yaml))
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q: %v", tc.yaml, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q: error %v, want %q", tc.yaml, err, tc.want)
		case tc.want == "" && c.Workload.Kind == "":
			t.Errorf("%q: no default workload kind", tc.yaml)
		}
	}
}

// The seeded-bug cases must build the kernels of cases/ext4-defrag-control
// (same source and fragment files, so the same cached base), and the fio
// case must differ from the patchbay one only in workload and image.
func TestSeededBugCasesShareTheControlKernel(t *testing.T) {
	pb, err := LoadCase("testdata/seeded-bugs")
	if err != nil {
		t.Fatal(err)
	}
	fio, err := LoadCase("testdata/seeded-bugs/fio.yaml")
	if err != nil {
		t.Fatal(err)
	}
	control, err := LoadCase("../cases/ext4-defrag-control")
	if err != nil {
		t.Fatal(err)
	}
	frags := func(c *Case) []string {
		var out []string
		for _, f := range c.Kernel.Fragments {
			out = append(out, c.Path(f))
		}
		return out
	}
	for _, c := range []*Case{pb, fio} {
		if c.Kernel.Source != control.Kernel.Source || c.Kernel.Cmdline != control.Kernel.Cmdline {
			t.Errorf("%s: kernel %+v, control %+v", c.Name, c.Kernel, control.Kernel)
		}
		if !slices.Equal(frags(c), frags(control)) {
			t.Errorf("%s: fragments %v, control %v", c.Name, frags(c), frags(control))
		}
		if c.Filesystem != control.Filesystem {
			t.Errorf("%s: filesystem %+v, control %+v", c.Name, c.Filesystem, control.Filesystem)
		}
		if c.VM.MemoryMB != control.VM.MemoryMB || c.VM.CPUs != control.VM.CPUs || c.VM.ScratchMB != control.VM.ScratchMB {
			t.Errorf("%s: vm %+v, control %+v", c.Name, c.VM, control.VM)
		}
		if !slices.Equal(c.VariantNames(), []string{"stock", "lost-dirty", "reread-cached", "skip-read", "warn-mapped"}) {
			t.Errorf("%s: variants %v", c.Name, c.VariantNames())
		}
		if len(c.Variants["stock"].Patches) != 0 {
			t.Errorf("%s: stock has patches", c.Name)
		}
	}
	if pb.Workload.Kind != casespec.WorkloadPatchbay || fio.Workload.Kind != casespec.WorkloadFio || pb.Workload.Duration != fio.Workload.Duration {
		t.Errorf("workloads: %s %s, %s %s", pb.Workload.Kind, pb.Workload.Duration.D(), fio.Workload.Kind, fio.Workload.Duration.D())
	}
	if pb.ImageRecipe().Packages[len(pb.ImageRecipe().Packages)-1] == "fio" || !slices.Contains(fio.ImageRecipe().Packages, "fio") {
		t.Error("only the fio case should add fio to its image")
	}
	for _, n := range fio.VariantNames() {
		a, _ := pb.PatchStack(n)
		b, _ := fio.PatchStack(n)
		if !slices.Equal(a, b) {
			t.Errorf("variant %s: patches %v vs %v", n, a, b)
		}
	}
}

// Every seeded-bug patch says it is a deliberately injected bug.
func TestSeededBugPatchesSayTheyAreBugs(t *testing.T) {
	paths, _ := filepath.Glob("testdata/seeded-bugs/*.patch")
	if len(paths) != 5 {
		t.Fatalf("patches %v, want 5", paths)
	}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		s := string(data)
		if !strings.Contains(s, "DELIBERATELY INJECTED BUG, FOR TESTING ONLY") ||
			(!strings.Contains(s, "+++ b/fs/ext4/move_extent.c") && !strings.Contains(s, "+++ b/fs/ext4/fsync.c")) {
			t.Errorf("%s: not a move_extent.c or fsync.c patch marked as an injected bug", p)
		}
	}
}

func TestDefragOptionValidation(t *testing.T) {
	base := "name: x\nkernel: {source: debian:linux-source-6.12}\n"
	for _, tc := range []struct{ yaml, want string }{
		{"workload: {mmap_writers: 1, fdatasync_every: 8, defrag: {donor: shared, evict_one_in: 4}}\nvariants: {a: {expect: {min_moved: 1}}}\n", ""},
		{"workload: {mmap_writers: 1, defrag: {donor: reuse}}\nvariants: {a: {}}\n", `workload.defrag.donor: "reuse"`},
		{"workload: {mmap_writers: 1, defrag: {tool: e4defrag}}\nvariants: {a: {expect: {max_bad_blocks: 0}}}\n", ""},
		{"workload: {mmap_writers: 1, defrag: {tool: e4defrag}}\nvariants: {a: {expect: {min_moved: 1}}}\n", "variants.a.expect: workload.defrag.tool e4defrag"},
		{"workload: {mmap_writers: 1, defrag: {tool: e4defrag, donor: shared}}\nvariants: {a: {}}\n", "e4defrag makes its own donors"},
		{"workload: {mmap_writers: 1, defrag: {tool: defrag}}\nvariants: {a: {}}\n", `workload.defrag.tool: "defrag"`},
		{"workload: {mmap_writers: 1, fsync_every: -1}\nvariants: {a: {}}\n", "cannot be negative"},
		{"workload: {mmap_writers: 1, files: 4, epochs: 5}\nvariants: {a: {}}\n", "workload.epochs: must be in 1..files (4)"},
	} {
		c, err := ParseCase("/tmp/x/case.yaml", []byte(base+tc.yaml))
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q: %v", tc.yaml, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q: error %v, want %q", tc.yaml, err, tc.want)
		case tc.want == "" && c.Workload.Defrag.Tool == "":
			t.Errorf("%q: no default defrag tool", tc.yaml)
		}
	}
}
