package fio

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"patchbay/record"
)

func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata/fio-output", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestParseReportSkipsLeadingText(t *testing.T) {
	js := readFixture(t, "workload-stock.json")
	// As fio writes it with --output: error messages first, some with braces.
	// Seen in a guest: a message from another thread cut into the "{".
	out := append([]byte("verify: bad magic header 0, wanted acca at file /x/y.dat offset 0 {\nverify: bad header offset 4632576, wanted 1245184verify: bad ma"), js...)
	rep, err := ParseReport(out)
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
	if _, err := ParseReport([]byte("fio: failed to open job file\n")); err == nil {
		t.Error("output without JSON parsed without error")
	}
}

func TestEngines(t *testing.T) {
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
	got := Engines(job)
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
	shipped, err := os.ReadFile("../../harness/testdata/seeded-bugs/defrag.fio")
	if err != nil {
		t.Fatal(err)
	}
	var defrag []string
	for s, e := range Engines(shipped) {
		if e == "e4defrag" {
			defrag = append(defrag, s)
		}
	}
	slices.Sort(defrag)
	if !slices.Equal(defrag, []string{"defrag-buffered", "defrag-direct"}) {
		t.Errorf("e4defrag sections of defrag.fio: %v", defrag)
	}
}

func TestRecordsCleanRun(t *testing.T) {
	rep, err := ParseReport(readFixture(t, "workload-stock.json"))
	if err != nil {
		t.Fatal(err)
	}
	job, err := os.ReadFile("../../harness/testdata/seeded-bugs/defrag.fio")
	if err != nil {
		t.Fatal(err)
	}
	writers, defrag := Records(rep, Engines(job), 0, nil)
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
}

func TestRecordsVerifyError(t *testing.T) {
	rep := &Report{Jobs: []Job{
		{Name: "buffered-writer", Error: 84, Write: Dir{TotalIOs: 100}, Options: map[string]any{"filename": "buffered.dat"}},
		{Name: "defrag-buffered", Write: Dir{TotalIOs: 7, IOBytes: 7 * 65536}},
	}}
	text := []byte("verify: bad magic header 0, wanted acca at file /mnt/scratch/fio/direct.dat offset 0, length 4096 (requested block: offset=0, length=4096)\n" +
		"crc32c: verify failed at file /mnt/scratch/fio/buffered.dat offset 8192, length 4096 (requested block: offset=8192, length=4096)\n" +
		"       Expected CRC: 1234\n       Received CRC: 5678\n" +
		"fio: pid=311, err=84/file:io_u.c:2220, func=io_u_queued_complete, error=Invalid or incomplete multibyte or wide character\n")
	writers, defrag := Records(rep, map[string]string{"defrag-buffered": "e4defrag"}, 1, text)
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

	// fio failing with no job error still fails the run, with fio's words.
	writers, _ = Records(&Report{Jobs: []Job{{Name: "a"}}}, nil, 1, []byte("fio: some error\nfio: job file broken\n"))
	if n := len(writers); n != 2 || len(writers[1].Errors) != 1 || !strings.Contains(writers[1].Errors[0], "fio exited 1: fio: job file broken") {
		t.Errorf("writers %+v: want a fio entry with the exit status and the last line", writers)
	}
}

func TestVerifyResultCountsBadBlocks(t *testing.T) {
	rep, err := ParseReport(readFixture(t, "verify-corrupted.json"))
	if err != nil {
		t.Fatal(err)
	}
	text := readFixture(t, "verify-corrupted.txt")
	// fio exits 0 with continue_on_error=verify: the count must come from
	// total_err and the messages, not from the exit status.
	v, err := VerifyResult("dropcache", rep, 0, text)
	if err != nil {
		t.Fatal(err)
	}
	if v.Phase != "dropcache" || v.Blocks != 4096 || v.BadTotal != 2 || v.Counts["verify-failed"] != 2 || v.Counts["ok"] != 4094 || len(v.Bad) != 2 {
		t.Errorf("verify result %+v: want 4096 blocks, 2 bad", v)
	}

	// Clean.
	clean := &Report{Jobs: []Job{{Name: "check", Read: Dir{IOBytes: 8 << 20}}}}
	if v, err := VerifyResult("live", clean, 0, nil); err != nil || v.BadTotal != 0 || v.Blocks != 2048 {
		t.Errorf("clean pass: %+v, %v", v, err)
	}
	// fio failing without naming a bad block is not a verdict on the data.
	broken := &Report{Jobs: []Job{{Name: "check", Error: 2}}}
	if _, err := VerifyResult("remount", broken, 1, []byte("fio: file buffered.dat: No such file or directory\n")); err == nil || !strings.Contains(err.Error(), "ENOENT") {
		t.Errorf("error %v: want one naming the job's ENOENT", err)
	}
}

// FuzzFioOutput: fio's output mixes messages into its JSON; the parsers
// must never panic on any of it, and what they accept must be sane.
func FuzzFioOutput(f *testing.F) {
	files, _ := filepath.Glob("testdata/fio-output/*")
	for _, p := range files {
		if data, err := os.ReadFile(p); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte("verify: bad ma{\n\"fio version\" : \"fio-3.33\", \"jobs\": []}\n"))
	f.Add([]byte("[global]\nioengine=psync\n[a]\nioengine=e4defrag\n[b]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if rep, err := ParseReport(data); err == nil && rep == nil {
			t.Fatal("nil report without an error")
		}
		for _, l := range verifyFailures(data) {
			if l == "" {
				t.Fatal("empty verify failure line")
			}
		}
		Engines(data)
	})
}

// scripted is a guest that answers fio's commands with recorded output: the
// real peer is a VM (harness's TestFioWorkloadEndToEnd); this checks the
// command lines and the evidence the steps leave.
type scripted struct {
	cmds    []string
	saved   map[string][]byte
	uploads map[string][]byte
	json    map[string][]byte // fio run name -> its --output file
	text    map[string][]byte // fio run name -> its text output
}

func (g *scripted) Sh(ctx context.Context, timeout time.Duration, save, cmd string) ([]byte, error) {
	g.cmds = append(g.cmds, cmd)
	var out []byte
	switch {
	case strings.Contains(cmd, " fio --output-format=json "):
		out = []byte("fio-exit=0\n")
	case strings.HasPrefix(cmd, "cat /tmp/pb/") && strings.HasSuffix(cmd, ".json"):
		out = g.json[strings.TrimSuffix(strings.TrimPrefix(cmd, "cat /tmp/pb/"), ".json")]
	case strings.HasPrefix(cmd, "cat /tmp/pb/") && strings.HasSuffix(cmd, ".txt"):
		out = g.text[strings.TrimSuffix(strings.TrimPrefix(cmd, "cat /tmp/pb/"), ".txt")]
	}
	if save != "" {
		g.saved[save] = out
	}
	return out, nil
}

func (g *scripted) Save(name string, data []byte) error { g.saved[name] = data; return nil }

func (g *scripted) SaveJSON(name string, v any) error {
	data, err := json.Marshal(v)
	g.saved[name] = data
	return err
}

func (g *scripted) Upload(ctx context.Context, data io.Reader, path string, mode os.FileMode) error {
	b, err := io.ReadAll(data)
	g.uploads[path] = b
	return err
}

func TestRunWorkloadAndVerifySteps(t *testing.T) {
	g := &scripted{saved: map[string][]byte{}, uploads: map[string][]byte{},
		json: map[string][]byte{
			"fio-workload":         readFixture(t, "workload-stock.json"),
			"fio-verify-live":      readFixture(t, "verify-corrupted.json"),
			"fio-verify-dropcache": readFixture(t, "verify-corrupted.json"),
			"fio-verify-remount":   readFixture(t, "verify-corrupted.json"),
		},
		text: map[string][]byte{"fio-verify-dropcache": readFixture(t, "verify-corrupted.txt")},
	}
	job, err := os.ReadFile("../../harness/testdata/seeded-bugs/defrag.fio")
	if err != nil {
		t.Fatal(err)
	}
	r := Run{Guest: g, Dir: "/mnt/scratch/fio", Tmp: "/tmp/pb", Seed: 42, Duration: 20 * time.Second}
	rec := &record.RunRecord{}
	if err := r.Workload(context.Background(), job, []byte("[check]\n"), time.Minute, rec); err != nil {
		t.Fatal(err)
	}
	if string(g.uploads["/tmp/pb/job.fio"]) != string(job) || string(g.uploads["/tmp/pb/verify.fio"]) != "[check]\n" {
		t.Errorf("uploads %v", g.uploads)
	}
	if want := "mkdir -p /mnt/scratch/fio && cd /mnt/scratch/fio && PB_DIR=/mnt/scratch/fio PB_RUNTIME=20 PB_SEED=42 fio --output-format=json --output=/tmp/pb/fio-workload.json /tmp/pb/job.fio > /tmp/pb/fio-workload.txt 2>&1"; !strings.HasPrefix(g.cmds[0], want) {
		t.Errorf("fio command\n%s\nwant prefix\n%s", g.cmds[0], want)
	}
	if len(rec.Writers) != 6 || len(rec.Defrag) != 2 || rec.Moved() != 533+558 {
		t.Errorf("record: %d writers, %d defrag, %d moved", len(rec.Writers), len(rec.Defrag), rec.Moved())
	}
	for _, name := range []string{"fio-job.fio", "fio-verify.fio", "fio-workload.json", "fio-workload.txt", "workload.json"} {
		if _, ok := g.saved[name]; !ok {
			t.Errorf("no %s saved (have %d files)", name, len(g.saved))
		}
	}
	if err := r.Verify(context.Background(), "umount /mnt/scratch && mount /dev/vdb /mnt/scratch", rec); err != nil {
		t.Fatal(err)
	}
	if len(rec.Verify) != 3 || rec.Verify[0].Phase != "live" || rec.Verify[1].BadTotal != 2 || rec.Verify[2].Phase != "remount" {
		t.Errorf("verify passes %+v", rec.Verify)
	}
	var before []string
	for _, c := range g.cmds {
		if c == "sync && echo 3 > /proc/sys/vm/drop_caches" || strings.HasPrefix(c, "umount ") {
			before = append(before, c)
		}
	}
	if len(before) != 2 {
		t.Errorf("drop_caches and remount commands: %q", before)
	}
	var phases map[string]record.VerifyResult
	if err := json.Unmarshal(g.saved["verify.json"], &phases); err != nil || len(phases) != 3 {
		t.Errorf("verify.json %s: %v", g.saved["verify.json"], err)
	}
}
