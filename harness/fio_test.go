package harness

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"patchbay/casespec"
	"patchbay/record"
)

func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata/seeded-bugs/fio-output", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestParseFioJSONSkipsLeadingText(t *testing.T) {
	js := readFixture(t, "workload-stock.json")
	// As fio writes it with --output: error messages first, some with braces.
	// Seen in a guest: a message from another thread cut into the "{".
	out := append([]byte("verify: bad magic header 0, wanted acca at file /x/y.dat offset 0 {\nverify: bad header offset 4632576, wanted 1245184verify: bad ma"), js...)
	rep, err := parseFioJSON(out)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Version != "fio-3.33" || len(rep.Jobs) != 6 {
		t.Fatalf("version %q, %d jobs: want fio-3.33 and 6 jobs", rep.Version, len(rep.Jobs))
	}
	d := rep.Jobs[4]
	if d.Name != "defrag-buffered" || d.Error != 16 || d.TotalErr != 441 || d.FirstError != 16 || d.Write.TotalIOs != 533 {
		t.Errorf("defrag-buffered parsed as %+v", d)
	}
	if _, err := parseFioJSON([]byte("fio: failed to open job file\n")); err == nil {
		t.Error("output without JSON parsed without error")
	}
}

func TestFioEngines(t *testing.T) {
	job := []byte(`; comment
[global]
ioengine=psync
bs=4k
[a]
rw=write
[b]
ioengine = e4defrag
[global]
ioengine=libaio
[c]
# comment
rw=read
`)
	got := fioEngines(job)
	want := map[string]string{"a": "psync", "b": "e4defrag", "c": "libaio"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("section %s: engine %q, want %q (all: %v)", k, got[k], v, got)
		}
	}
	if len(got) != len(want) {
		t.Errorf("sections %v, want %v", got, want)
	}
	// The shipped job: two e4defrag jobs, everything else writes.
	shipped, err := os.ReadFile("testdata/seeded-bugs/defrag.fio")
	if err != nil {
		t.Fatal(err)
	}
	var defrag []string
	for s, e := range fioEngines(shipped) {
		if e == "e4defrag" {
			defrag = append(defrag, s)
		}
	}
	slices.Sort(defrag)
	if !slices.Equal(defrag, []string{"defrag-buffered", "defrag-direct"}) {
		t.Errorf("e4defrag sections of defrag.fio: %v", defrag)
	}
}

func TestFioRecordsCleanRunPasses(t *testing.T) {
	rep, err := parseFioJSON(readFixture(t, "workload-stock.json"))
	if err != nil {
		t.Fatal(err)
	}
	job, err := os.ReadFile("testdata/seeded-bugs/defrag.fio")
	if err != nil {
		t.Fatal(err)
	}
	writers, defrag := fioRecords(rep, fioEngines(job), 0, nil)
	if len(writers) != 6 || len(defrag) != 2 {
		t.Fatalf("%d writers, %d defrag: want 6 and 2", len(writers), len(defrag))
	}
	for _, w := range writers {
		if len(w.Errors) > 0 {
			t.Errorf("%s: errors %v in a run fio finished with exit 0 (EBUSY ignored by the job)", w.Mode, w.Errors)
		}
	}
	// 533 moves and 441 EBUSY in defrag-buffered, 558 moves in defrag-direct.
	if d := defrag[0]; d.Results["moved"] != 533 || d.Results["EBUSY"] != 441 || d.Attempts != 974 {
		t.Errorf("defrag-buffered: %+v", d)
	}
	rec := &record.RunRecord{Writers: writers, Defrag: defrag}
	if rec.Moved() != 533+558 || rec.Writes() == 0 {
		t.Errorf("moved %d writes %d", rec.Moved(), rec.Writes())
	}
	for _, phase := range []string{"live", "dropcache", "remount"} {
		rec.Verify = append(rec.Verify, record.VerifyResult{Phase: phase, Blocks: 4096, Counts: map[string]int64{"ok": 4096}})
	}
	rec.Fsck = &record.FsckResult{Clean: true}
	one, zero := 1, 0
	Judge(rec, RunStatus{}, casespec.Expectation{MinMoved: &one, MaxBadBlocks: &zero, FsckClean: true, NoFindings: true})
	if rec.Outcome != record.Pass {
		t.Errorf("outcome %s %v, want pass", rec.Outcome, rec.Reasons)
	}
}

func TestFioRecordsVerifyErrorFails(t *testing.T) {
	rep := &FioReport{Jobs: []FioJob{
		{Name: "buffered-writer", Error: 84, Write: FioDir{TotalIOs: 100}, Options: map[string]any{"filename": "buffered.dat"}},
		{Name: "defrag-buffered", Write: FioDir{TotalIOs: 7, IOBytes: 7 * 65536}},
	}}
	text := []byte("verify: bad magic header 0, wanted acca at file /mnt/scratch/fio/direct.dat offset 0, length 4096 (requested block: offset=0, length=4096)\n" +
		"crc32c: verify failed at file /mnt/scratch/fio/buffered.dat offset 8192, length 4096 (requested block: offset=8192, length=4096)\n" +
		"       Expected CRC: 1234\n       Received CRC: 5678\n" +
		"fio: pid=311, err=84/file:io_u.c:2220, func=io_u_queued_complete, error=Invalid or incomplete multibyte or wide character\n")
	writers, defrag := fioRecords(rep, map[string]string{"defrag-buffered": "e4defrag"}, 1, text)
	if len(writers) != 2 || len(defrag) != 1 {
		t.Fatalf("%d writers, %d defrag", len(writers), len(defrag))
	}
	if defrag[0].BlocksMoved != 7*16 || defrag[0].Results["moved"] != 7 {
		t.Errorf("defrag %+v", defrag[0])
	}
	errs := writers[0].Errors
	if len(errs) != 1 || !strings.Contains(errs[0], "EILSEQ") || !strings.Contains(errs[0], "1 verify failure(s), first: crc32c: verify failed at file /mnt/scratch/fio/buffered.dat offset 8192") {
		t.Fatalf("writer errors %q: want the job's error and its own file's first verify failure", errs)
	}
	rec := &record.RunRecord{Writers: writers, Defrag: defrag}
	Judge(rec, RunStatus{}, casespec.Expectation{})
	if rec.Outcome != record.Fail || !strings.Contains(strings.Join(rec.Reasons, "\n"), "verify failed") {
		t.Errorf("outcome %s %v: want fail naming the verify failure", rec.Outcome, rec.Reasons)
	}

	// fio failing with no job error still fails the run, with fio's words.
	writers, _ = fioRecords(&FioReport{Jobs: []FioJob{{Name: "a"}}}, nil, 1, []byte("fio: some error\nfio: job file broken\n"))
	if n := len(writers); n != 2 || len(writers[1].Errors) != 1 || !strings.Contains(writers[1].Errors[0], "fio exited 1: fio: job file broken") {
		t.Errorf("writers %+v: want a fio entry with the exit status and the last line", writers)
	}
}

func TestFioVerifyResultCountsBadBlocks(t *testing.T) {
	rep, err := parseFioJSON(readFixture(t, "verify-corrupted.json"))
	if err != nil {
		t.Fatal(err)
	}
	text := readFixture(t, "verify-corrupted.txt")
	// fio exits 0 with continue_on_error=verify: the count must come from
	// total_err and the messages, not from the exit status.
	v, err := fioVerifyResult("dropcache", rep, 0, text)
	if err != nil {
		t.Fatal(err)
	}
	if v.Phase != "dropcache" || v.Blocks != 4096 || v.BadTotal != 2 || v.Counts["verify-failed"] != 2 || v.Counts["ok"] != 4094 || len(v.Bad) != 2 {
		t.Errorf("verify result %+v: want 4096 blocks, 2 bad", v)
	}
	rec := &record.RunRecord{Verify: []record.VerifyResult{v}}
	zero := 0
	Judge(rec, RunStatus{}, casespec.Expectation{MaxBadBlocks: &zero})
	if rec.Outcome != record.Fail || !strings.Contains(strings.Join(rec.Reasons, "; "), "verify dropcache: 2 bad blocks") {
		t.Errorf("outcome %s %v: want fail on the dropcache phase", rec.Outcome, rec.Reasons)
	}

	// Clean.
	clean := &FioReport{Jobs: []FioJob{{Name: "check", Read: FioDir{IOBytes: 8 << 20}}}}
	if v, err := fioVerifyResult("live", clean, 0, nil); err != nil || v.BadTotal != 0 || v.Blocks != 2048 {
		t.Errorf("clean pass: %+v, %v", v, err)
	}
	// fio failing without naming a bad block is not a verdict on the data.
	broken := &FioReport{Jobs: []FioJob{{Name: "check", Error: 2}}}
	if _, err := fioVerifyResult("remount", broken, 1, []byte("fio: file buffered.dat: No such file or directory\n")); err == nil || !strings.Contains(err.Error(), "ENOENT") {
		t.Errorf("error %v: want one naming the job's ENOENT", err)
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
