package guest

import (
	"encoding/binary"
	"testing"
)

const testSeed = 42

func encoded(size int, h Header) []byte {
	b := make([]byte, size)
	EncodeBlock(b, h)
	return b
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	for _, size := range []int{128, 512, 4096, 4096 + 64} {
		h := Header{File: 3, Block: 77, Writer: 5, Gen: 123456789, Seed: testSeed}
		b := encoded(size, h)
		got, ok := DecodeHeader(b)
		if !ok {
			t.Fatalf("size %d: DecodeHeader failed", size)
		}
		h.Checksum = Checksum(b)
		if got != h {
			t.Fatalf("size %d: got %+v want %+v", size, got, h)
		}
		if got := string(b[:8]); got != "PBAYBLK1" {
			t.Fatalf("magic bytes %q", got)
		}
		if again := encoded(size, Header{File: 3, Block: 77, Writer: 5, Gen: 123456789, Seed: testSeed}); string(again) != string(b) {
			t.Fatalf("size %d: encoding is not deterministic", size)
		}
		if v := Classify(b, 3, 77, testSeed, 123456789); v.Class != ClassOK {
			t.Fatalf("size %d: round trip classified %s", size, v.Class)
		}
	}
}

func TestPayloadDiffersPerField(t *testing.T) {
	base := Header{File: 1, Block: 2, Writer: 3, Gen: 4, Seed: 5}
	variants := []Header{
		{File: 9, Block: 2, Writer: 3, Gen: 4, Seed: 5},
		{File: 1, Block: 9, Writer: 3, Gen: 4, Seed: 5},
		{File: 1, Block: 2, Writer: 9, Gen: 4, Seed: 5},
		{File: 1, Block: 2, Writer: 3, Gen: 9, Seed: 5},
		{File: 1, Block: 2, Writer: 3, Gen: 4, Seed: 9},
	}
	b := encoded(256, base)
	for _, v := range variants {
		o := encoded(256, v)
		if string(o[HeaderSize:]) == string(b[HeaderSize:]) {
			t.Fatalf("payload of %+v equals payload of %+v", v, base)
		}
	}
}

func TestClassify(t *testing.T) {
	const size = 512
	this := Header{File: 1, Block: 7, Writer: 2, Gen: 10, Seed: testSeed}
	with := func(mut func(*Header)) []byte {
		h := this
		mut(&h)
		return encoded(size, h)
	}
	flip := func(b []byte, i int) []byte { b[i] ^= 0x40; return b }
	mixed := func() []byte {
		// First half from gen 11, second half from gen 10: a torn write.
		b := with(func(h *Header) { h.Gen = 11 })
		copy(b[size/2:], encoded(size, this)[size/2:])
		return b
	}
	random := make([]byte, size)
	r := NewRNG(1)
	for i := range random {
		random[i] = byte(r.Next())
	}

	tests := []struct {
		name  string
		block []byte
		want  Class
		found bool
	}{
		{"ok", encoded(size, this), ClassOK, true},
		{"zeros", make([]byte, size), ClassZeros, false},
		{"stale", with(func(h *Header) { h.Gen = 9 }), ClassStale, true},
		{"stale gen 0", with(func(h *Header) { h.Gen = 0 }), ClassStale, true},
		{"future", with(func(h *Header) { h.Gen = 11 }), ClassFuture, true},
		{"misplaced other block", with(func(h *Header) { h.Block = 8 }), ClassMisplaced, true},
		{"misplaced other file", with(func(h *Header) { h.File = 0 }), ClassMisplaced, true},
		{"torn payload bit", flip(encoded(size, this), size-1), ClassTorn, true},
		{"torn halves", mixed(), ClassTorn, true},
		{"torn checksum field", flip(encoded(size, this), offChecksum), ClassTorn, true},
		{"torn gen field", flip(encoded(size, this), offGen), ClassTorn, true},
		{"garbage random", random, ClassGarbage, false},
		{"garbage bad magic", flip(encoded(size, this), 0), ClassGarbage, false},
		{"garbage other block bad checksum", flip(with(func(h *Header) { h.Block = 8 }), size-1), ClassGarbage, true},
		{"garbage other run", with(func(h *Header) { h.Seed = testSeed + 1 }), ClassGarbage, true},
		{"torn reserved set, checksum recomputed", func() []byte {
			b := encoded(size, this)
			b[offReserved] = 1
			binary.LittleEndian.PutUint64(b[offChecksum:], Checksum(b))
			return b
		}(), ClassTorn, true},
		{"garbage short", encoded(size, this)[:HeaderSize-1], ClassGarbage, false},
		{"garbage empty", nil, ClassGarbage, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := Classify(tc.block, this.File, this.Block, testSeed, this.Gen)
			if v.Class != tc.want {
				t.Fatalf("class %s, want %s (found %+v)", v.Class, tc.want, v.Found)
			}
			if (v.Found != nil) != tc.found {
				t.Fatalf("found %+v, want found=%v", v.Found, tc.found)
			}
		})
	}
}

func TestOwnership(t *testing.T) {
	l := Layout{Dir: "x", Files: 3, Blocks: 10, BlockSize: 4096, Writers: 4}
	seen := make(map[int]int)
	for id := 0; id < l.Writers; id++ {
		for _, g := range l.Owned(id) {
			if o := l.Owner(g/l.Blocks, g%l.Blocks); o != id {
				t.Fatalf("block %d listed for writer %d but owned by %d", g, id, o)
			}
			seen[g]++
		}
	}
	if len(seen) != l.Files*l.Blocks {
		t.Fatalf("owned %d distinct blocks, want %d", len(seen), l.Files*l.Blocks)
	}
	for g, n := range seen {
		if n != 1 {
			t.Fatalf("block %d owned %d times", g, n)
		}
	}
	if got := l.Owner(1, 3); got != (1*10+3)%4 {
		t.Fatalf("Owner(1,3) = %d", got)
	}
}

func TestLayoutValidate(t *testing.T) {
	good := Layout{Dir: "d", Files: 1, Blocks: 1, BlockSize: 4096, Writers: 1}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, mut := range []func(*Layout){
		func(l *Layout) { l.Dir = "" },
		func(l *Layout) { l.Files = 0 },
		func(l *Layout) { l.Blocks = -1 },
		func(l *Layout) { l.BlockSize = 100 },
		func(l *Layout) { l.BlockSize = 64 },
		func(l *Layout) { l.Writers = 0 },
	} {
		l := good
		mut(&l)
		if l.Validate() == nil {
			t.Fatalf("%+v validated", l)
		}
	}
}

func TestDeriveSeedDistinct(t *testing.T) {
	a := DeriveSeed(1, roleWrite, 0)
	if a == DeriveSeed(1, roleWrite, 1) || a == DeriveSeed(2, roleWrite, 0) || a == DeriveSeed(1, roleDefrag, 0) {
		t.Fatal("derived seeds collide")
	}
}

func FuzzClassify(f *testing.F) {
	f.Add(encoded(128, Header{File: 1, Block: 2, Gen: 3, Seed: testSeed}), uint32(1), uint32(2), uint64(3))
	f.Add(make([]byte, 128), uint32(0), uint32(0), uint64(0))
	f.Add([]byte("PBAYBLK1"), uint32(0), uint32(0), uint64(0))
	f.Add([]byte{}, uint32(0), uint32(0), uint64(0))
	f.Fuzz(func(t *testing.T, b []byte, file, block uint32, exp uint64) {
		v := Classify(b, file, block, testSeed, exp)
		switch v.Class {
		case ClassOK, ClassStale, ClassFuture, ClassMisplaced, ClassTorn:
			if v.Found == nil {
				t.Fatalf("class %s without header", v.Class)
			}
		case ClassZeros, ClassGarbage:
		default:
			t.Fatalf("unexpected class %s", v.Class)
		}
		if v.Class == ClassOK {
			// An ok verdict must survive a re-encode of what was found.
			re := encoded(len(b), *v.Found)
			if string(re) != string(b) {
				t.Fatalf("ok block does not re-encode identically")
			}
		}
	})
}
