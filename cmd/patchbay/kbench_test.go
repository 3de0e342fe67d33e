package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"patchbay/kernel"
)

func TestBenchVariantIsRegistered(t *testing.T) {
	root := newRootCommand()
	cmd, rest, err := root.Find([]string{"bench", "variant", "cases/x"})
	if err != nil || cmd.Name() != "variant" || len(rest) != 1 {
		t.Fatalf("bench variant: %v %v %v", cmd, rest, err)
	}
	if _, err := runRoot(t, "bench", "variant"); err == nil {
		t.Error("bench variant without a case ran")
	}
}

func TestPrintVariantBench(t *testing.T) {
	var out bytes.Buffer
	printVariantBench(&out, "eopnotsupp", &kernel.VariantBench{File: "fs/ext4/move_extent.c",
		Variant: 15 * time.Second, Make: 14 * time.Second, Hit: 20 * time.Millisecond})
	for _, want := range []string{"fresh variant build:  15.00s", "make alone:           14.00s", "ratio 1.07x (goal <= 1.2x)", "cache hit:             0.02s"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
