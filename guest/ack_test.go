package guest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func ackDisk(t *testing.T, l Layout) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "acks.raw")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, AckDiskSize(l)); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestAckRoundTrip: the floor is the newest intact record per (writer,
// file); a torn newest slot falls back to the one before it.
func TestAckRoundTrip(t *testing.T) {
	l := Layout{Dir: "/unused", Files: 2, Blocks: 8, BlockSize: 4096, Writers: 2, Seed: 5}
	disk := ackDisk(t, l)
	a, err := OpenAckLog(disk, l, 1)
	if err != nil {
		t.Fatal(err)
	}
	row := func(gens ...int64) []int64 { return gens }
	// Writer 1 owns odd global blocks: in file 0 blocks 1,3,5,7.
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(a.Ack(0, row(-1, 2, -1, 0, -1, 0, -1, 0)))
	must(a.Ack(0, row(-1, 3, -1, 4, -1, 0, -1, 0)))
	must(a.Ack(1, row(-1, 1, -1, 0, -1, 0, -1, 9)))
	must(a.Close())

	floor, st, err := ReadAcks(disk, l)
	if err != nil {
		t.Fatal(err)
	}
	if floor[0][1] != 3 || floor[0][3] != 4 || floor[1][7] != 9 || floor[0][0] != 0 {
		t.Errorf("floor %v: want f0 b1=3 b3=4, f1 b7=9, the rest 0", floor)
	}
	if st.Records != 3 || st.AckedBlocks != 4 || st.MaxGen != 9 {
		t.Errorf("stats %+v: want 3 records, 4 acked blocks, max gen 9", st)
	}

	// Tear the newest record of file 0 (seq 2): seq 1 must be used.
	f, err := os.OpenFile(disk, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{0xff}, ackSlotOffset(l, 1, 0, 2)+ackHeader+8); err != nil {
		t.Fatal(err)
	}
	f.Close()
	floor, _, err = ReadAcks(disk, l)
	if err != nil {
		t.Fatal(err)
	}
	if floor[0][1] != 2 || floor[0][3] != 0 {
		t.Errorf("after tearing seq 2: floor f0 = %v, want b1=2 b3=0 (seq 1)", floor[0])
	}
}

func TestAckRejectsForeignBlockAndSmallDisk(t *testing.T) {
	l := Layout{Dir: "/unused", Files: 1, Blocks: 4, BlockSize: 4096, Writers: 2, Seed: 5}
	disk := ackDisk(t, l)
	a, err := OpenAckLog(disk, l, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Ack(0, []int64{1, 7, -1, -1}); err != nil { // block 1 is writer 1's
		t.Fatal(err)
	}
	a.Close()
	if _, _, err := ReadAcks(disk, l); err == nil || !strings.Contains(err.Error(), "owned by writer 1") {
		t.Errorf("foreign block: err %v, want one naming the owner", err)
	}
	big := l
	big.Files = 3
	if _, err := OpenAckLog(disk, big, 0); err == nil || !strings.Contains(err.Error(), "need") {
		t.Errorf("small disk: err %v", err)
	}
	if _, _, err := ReadAcks(ackDisk(t, l), big); err == nil || !strings.Contains(err.Error(), "too small") {
		t.Errorf("small disk read: err %v", err)
	}
}

// TestWriteAcksAndVerifyAtLeast: a writer with --ack-dev records its
// syncs; verify against the floor passes on the intact files and names a
// block rolled back below its acknowledged generation.
func TestWriteAcksAndVerifyAtLeast(t *testing.T) {
	l := testLayout(t, 1)
	if _, err := Prepare(l, false); err != nil {
		t.Fatal(err)
	}
	disk := ackDisk(t, l)
	rep, err := Write(context.Background(), WriteConfig{Layout: l, Mode: ModePwrite, ID: 0,
		Duration: 300 * time.Millisecond, FsyncEvery: 4, AckDev: disk})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Errors) > 0 || rep.Acks == 0 || rep.Acks != rep.Fsyncs {
		t.Fatalf("write: %d acks for %d fsyncs, errors %v", rep.Acks, rep.Fsyncs, rep.Errors)
	}
	floor, st, err := ReadAcks(disk, l)
	if err != nil {
		t.Fatal(err)
	}
	if st.Records != uint64(rep.Acks) || st.AckedBlocks == 0 {
		t.Fatalf("ack stats %+v for %d acks", st, rep.Acks)
	}
	// Writes after the last fsync may be newer than the floor: "future" is fine.
	v, err := Verify(VerifyConfig{Layout: l, Expected: floor, AtLeast: true, MaxReport: 10})
	if err != nil {
		t.Fatal(err)
	}
	if v.BadTotal != 0 {
		t.Fatalf("intact files: %d bad: %+v", v.BadTotal, v.Bad)
	}
	// Roll one acknowledged block back to generation 0: a lost fsync.
	var f, b int
	for f = range floor {
		for b = range floor[f] {
			if floor[f][b] > 0 {
				goto found
			}
		}
	}
found:
	buf := make([]byte, l.BlockSize)
	EncodeBlock(buf, Header{File: uint32(f), Block: uint32(b), Writer: 0, Gen: 0, Seed: l.Seed})
	pwriteBlock(t, l, f, b, buf)
	v, err = Verify(VerifyConfig{Layout: l, Expected: floor, AtLeast: true, MaxReport: 10})
	if err != nil {
		t.Fatal(err)
	}
	if v.BadTotal != 1 || v.Bad[0].Class != ClassStale || v.Bad[0].File != f || v.Bad[0].Block != b || v.Bad[0].ExpectedGen != floor[f][b] {
		t.Errorf("rolled back %s block %d: verify %+v", FileName(f), b, v.Bad)
	}
}
