package guest

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func testLayout(t *testing.T, writers int) Layout {
	t.Helper()
	return Layout{Dir: t.TempDir(), Files: 2, Blocks: 64, BlockSize: 4096, Writers: writers, Seed: 7}
}

// writeJSON stores a report the way the harness does, for --expect.
func writeJSON(t *testing.T, v any) string {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "report.json")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func pwriteBlock(t *testing.T, l Layout, f, b int, data []byte) {
	t.Helper()
	fh, err := os.OpenFile(l.Path(f), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	if _, err := fh.WriteAt(data, int64(b)*int64(l.BlockSize)); err != nil {
		t.Fatal(err)
	}
}

func readBlock(t *testing.T, l Layout, f, b int) []byte {
	t.Helper()
	data, err := os.ReadFile(l.Path(f))
	if err != nil {
		t.Fatal(err)
	}
	return data[b*l.BlockSize : (b+1)*l.BlockSize]
}

func TestPrepareVerifyFresh(t *testing.T) {
	l := testLayout(t, 3)
	rep, err := Prepare(l, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Files) != l.Files || rep.Files[1].Name != "f001" || rep.Files[1].Size != l.FileSize() {
		t.Fatalf("prepare report %+v", rep)
	}
	v, err := Verify(VerifyConfig{Layout: l, Phase: "fresh", Mmap: true, MaxReport: 10})
	if err != nil {
		t.Fatal(err)
	}
	if v.BadTotal != 0 || v.Counts[ClassOK] != l.Files*l.Blocks || v.MmapCounts[ClassOK] != l.Files*l.Blocks {
		t.Fatalf("fresh verify %+v", v)
	}
	h, _ := DecodeHeader(readBlock(t, l, 1, 5))
	if int(h.Writer) != l.Owner(1, 5) || h.Gen != 0 {
		t.Fatalf("prepared header %+v", h)
	}
}

func TestWriteRejectsBadConfig(t *testing.T) {
	l := testLayout(t, 2)
	if _, err := Prepare(l, false); err != nil {
		t.Fatal(err)
	}
	for _, c := range []WriteConfig{
		{Layout: l, Mode: "bogus", ID: 0, Duration: time.Second},
		{Layout: l, Mode: ModeMmap, ID: 2, Duration: time.Second},
		{Layout: l, Mode: ModeMmap, ID: 0},
	} {
		if _, err := Write(context.Background(), c); err == nil {
			t.Fatalf("config %+v accepted", c)
		}
	}
	short := l
	short.Blocks = l.Blocks + 1
	if _, err := Write(context.Background(), WriteConfig{Layout: short, Mode: ModeMmap, ID: 0, Duration: time.Second}); err == nil {
		t.Fatal("size mismatch accepted")
	}
}

// TestEndToEnd runs an mmap and a pwrite writer concurrently, checks that
// verify finds everything ok, then corrupts blocks on purpose and checks
// that verify names each class.
func TestEndToEnd(t *testing.T) {
	l := testLayout(t, 2)
	if _, err := Prepare(l, false); err != nil {
		t.Fatal(err)
	}
	cfgs := []WriteConfig{
		{Layout: l, Mode: ModeMmap, ID: 0, Duration: time.Second, MsyncEvery: 50, FsyncEvery: 200, DontneedOneIn: 8, CheckEvery: 3},
		{Layout: l, Mode: ModePwrite, ID: 1, Duration: time.Second, FsyncEvery: 100, CheckEvery: 3},
	}
	reps := make([]WriteReport, len(cfgs))
	errs := make([]error, len(cfgs))
	var wg sync.WaitGroup
	for i, c := range cfgs {
		wg.Go(func() { reps[i], errs[i] = Write(context.Background(), c) })
	}
	wg.Wait()
	var paths []string
	for i, r := range reps {
		if errs[i] != nil {
			t.Fatalf("writer %d: %v", i, errs[i])
		}
		if r.Writes == 0 || len(r.Errors) != 0 {
			t.Fatalf("writer %d: writes %d errors %v", i, r.Writes, r.Errors)
		}
		if r.Readbacks == 0 || r.ReadbackBad != 0 {
			t.Fatalf("writer %d: %d read-backs, %d bad %v", i, r.Readbacks, r.ReadbackBad, r.BadReads)
		}
		for f := range r.Gens {
			for b, g := range r.Gens[f] {
				if owned := l.Owner(f, b) == r.ID; owned != (g >= 0) {
					t.Fatalf("writer %d gens[%d][%d] = %d, owned %v", i, f, b, g, owned)
				}
			}
		}
		paths = append(paths, writeJSON(t, r))
	}
	if reps[0].Dontneeds == 0 || reps[0].Msyncs == 0 {
		t.Fatalf("mmap writer skipped madvise/msync: %+v", reps[0].Dontneeds)
	}

	exp, err := LoadExpected(l, paths)
	if err != nil {
		t.Fatal(err)
	}
	verify := func(phase string) VerifyReport {
		t.Helper()
		v, err := Verify(VerifyConfig{Layout: l, Phase: phase, Expected: exp, Mmap: true, MaxReport: 50})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if v := verify("clean"); v.BadTotal != 0 || v.Counts[ClassOK] != l.Files*l.Blocks {
		t.Fatalf("clean verify: %+v", v)
	}

	// Pick distinct victims that were rewritten at least once, so an older
	// generation exists to plant.
	var victims [][2]int
	for f := range exp {
		for b, g := range exp[f] {
			if g >= 2 && len(victims) < 4 && (f != l.Files-1 || b != l.Blocks-1) {
				victims = append(victims, [2]int{f, b})
			}
		}
	}
	if len(victims) < 4 {
		t.Fatalf("writers rewrote too few blocks: %v", exp)
	}
	zf, zb := victims[0][0], victims[0][1]
	sf, sb := victims[1][0], victims[1][1]
	mf, mb := victims[2][0], victims[2][1]
	tf, tb := victims[3][0], victims[3][1]

	pwriteBlock(t, l, zf, zb, make([]byte, l.BlockSize))
	pwriteBlock(t, l, sf, sb, encoded(l.BlockSize, Header{File: uint32(sf), Block: uint32(sb), Writer: uint32(l.Owner(sf, sb)), Gen: uint64(exp[sf][sb] - 1), Seed: l.Seed}))
	// The misplaced source is the last block of the last file, never a victim.
	of, ob := l.Files-1, l.Blocks-1
	pwriteBlock(t, l, mf, mb, append([]byte(nil), readBlock(t, l, of, ob)...))
	torn := readBlock(t, l, tf, tb)
	torn[l.BlockSize-1] ^= 0xff
	pwriteBlock(t, l, tf, tb, torn)

	v := verify("corrupted")
	want := map[[2]int]Class{{zf, zb}: ClassZeros, {sf, sb}: ClassStale, {mf, mb}: ClassMisplaced, {tf, tb}: ClassTorn}
	if v.BadTotal != 2*len(want) {
		t.Fatalf("bad_total %d, want %d: %+v", v.BadTotal, 2*len(want), v.Bad)
	}
	for _, bad := range v.Bad {
		key := [2]int{bad.File, bad.Block}
		if want[key] != bad.Class {
			t.Fatalf("block %v via %s classified %s, want %s", key, bad.Via, bad.Class, want[key])
		}
		if bad.ExpectedGen != exp[bad.File][bad.Block] {
			t.Fatalf("block %v expected_gen %d, want %d", key, bad.ExpectedGen, exp[bad.File][bad.Block])
		}
		switch bad.Class {
		case ClassZeros:
			if bad.Found != nil {
				t.Fatalf("zeros with found %+v", bad.Found)
			}
		case ClassStale:
			if bad.Found == nil || int64(bad.Found.Gen) != exp[sf][sb]-1 {
				t.Fatalf("stale found %+v", bad.Found)
			}
		case ClassMisplaced:
			if bad.Found == nil || int(bad.Found.File) != of || int(bad.Found.Block) != ob {
				t.Fatalf("misplaced found %+v", bad.Found)
			}
		}
	}
	for c, n := range map[Class]int{ClassOK: l.Files*l.Blocks - 4, ClassZeros: 1, ClassStale: 1, ClassMisplaced: 1, ClassTorn: 1} {
		if v.Counts[c] != n || v.MmapCounts[c] != n {
			t.Fatalf("counts[%s] pread %d mmap %d, want %d", c, v.Counts[c], v.MmapCounts[c], n)
		}
	}

	// A later writer starts from what is on disk, so its gens only grow;
	// the corrupted victims it owns restart from 0 and are reported.
	again, err := Write(context.Background(), WriteConfig{Layout: l, Mode: ModePwrite, ID: 1, Duration: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for f := range again.Gens {
		for b, g := range again.Gens[f] {
			if _, victim := want[[2]int{f, b}]; !victim && g >= 0 && g < reps[1].Gens[f][b] {
				t.Fatalf("second phase gen %d < first phase %d at %d/%d", g, reps[1].Gens[f][b], f, b)
			}
		}
	}
	victimsOwned := 0
	for key, c := range want {
		if l.Owner(key[0], key[1]) == 1 && c != ClassStale {
			victimsOwned++
		}
	}
	if again.ErrorsTotal != victimsOwned {
		t.Fatalf("second phase reported %d initial errors, want %d: %v", again.ErrorsTotal, victimsOwned, again.Errors)
	}
}

func TestMmapFaultReported(t *testing.T) {
	// Truncating under a live mapping makes the next access SIGBUS; the
	// writer must report that instead of crashing.
	l := testLayout(t, 1)
	if _, err := Prepare(l, false); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Open(l.Path(0), unix.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	m, err := unix.Mmap(fd, 0, int(l.FileSize()), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	if err := unix.Ftruncate(fd, 0); err != nil {
		t.Fatal(err)
	}
	err = safeCopy(m[:l.BlockSize], make([]byte, l.BlockSize))
	if _, ok := err.(faultError); !ok {
		t.Fatalf("safeCopy after truncate: %v", err)
	}
}

// TestReadBackCatchesLostWrite makes a block stale behind a writer's back
// (as a dropped journalled buffer would) and checks the read-back names it.
func TestReadBackCatchesLostWrite(t *testing.T) {
	l := testLayout(t, 1)
	l.Files, l.Blocks = 1, 1
	if _, err := Prepare(l, false); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(l.Dir, FileName(0))
	stale, err := os.ReadFile(path) // generation 0, as prepared
	if err != nil {
		t.Fatal(err)
	}
	w := &writer{cfg: WriteConfig{Layout: l, Mode: ModePwrite, CheckEvery: 1}, rbuf: make([]byte, l.BlockSize),
		rng: NewRNG(1), owned: []int{0}, rep: &WriteReport{Gens: l.NewGens(-1), BadReads: []string{}}}
	fd, err := unix.Open(path, unix.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	w.fds = []int{fd}
	w.rep.Gens[0][0] = 5 // the writer believes it completed gen 5
	if err := os.WriteFile(path, stale, 0o644); err != nil {
		t.Fatal(err)
	}
	w.readBack()
	if w.rep.Readbacks != 1 || w.rep.ReadbackBad != 1 || len(w.rep.BadReads) != 1 ||
		!strings.Contains(w.rep.BadReads[0], "stale, expected gen 5, found file 0 block 0 writer 0 gen 0") {
		t.Fatalf("read-back report %+v", w.rep)
	}
}

// TestWriteRatesAndFdatasync checks the per-writer rates, the thread's
// fault count (an mmap writer faults, a pwrite writer barely) and that
// --fdatasync-every is honoured on its own.
func TestWriteRatesAndFdatasync(t *testing.T) {
	l := testLayout(t, 2)
	if _, err := Prepare(l, false); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	m, err := Write(ctx, WriteConfig{Layout: l, Mode: ModeMmap, ID: 0, Duration: 300 * time.Millisecond, DontneedOneIn: 4})
	if err != nil {
		t.Fatal(err)
	}
	p, err := Write(ctx, WriteConfig{Layout: l, Mode: ModePwrite, ID: 1, Duration: 300 * time.Millisecond, FdatasyncEvery: 7})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("mmap: %d writes %.0f/s faults %d (%.0f/s, process %d); pwrite: %d writes %.0f/s faults %d, %d fdatasyncs",
		m.Writes, m.WritesPerS, m.FaultsThread, m.FaultsPerS, m.FaultsHint, p.Writes, p.WritesPerS, p.FaultsThread, p.Fdatasyncs)
	for _, r := range []WriteReport{m, p} {
		if r.Writes == 0 || r.WritesPerS != float64(r.Writes)/r.ElapsedS || r.FaultsPerS != float64(r.FaultsThread)/r.ElapsedS {
			t.Fatalf("%s rates: %+v", r.Mode, r)
		}
	}
	// Every MADV_DONTNEED leaves at least one zapped page the next write
	// to it faults in again, and the first write to each page faults too.
	if m.Dontneeds == 0 || m.FaultsThread < int64(l.Files) || m.FaultsThread <= p.FaultsThread {
		t.Fatalf("mmap writer faults %d (dontneeds %d), pwrite writer faults %d", m.FaultsThread, m.Dontneeds, p.FaultsThread)
	}
	if p.Fdatasyncs != p.Writes/7 || p.Fsyncs != 0 {
		t.Fatalf("fdatasyncs %d fsyncs %d after %d writes, want %d and 0", p.Fdatasyncs, p.Fsyncs, p.Writes, p.Writes/7)
	}
	if _, err := Write(ctx, WriteConfig{Layout: l, Mode: ModePwrite, ID: 1, Duration: time.Second, FdatasyncEvery: -1}); err == nil {
		t.Fatal("negative --fdatasync-every accepted")
	}
}
