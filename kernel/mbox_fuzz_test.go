package kernel

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzSplitMbox: splitting and parsing an mbox never panics; the mails are
// the input cut at separator lines, in order, and lose no byte after the
// first separator; a parse error names the file.
func FuzzSplitMbox(f *testing.F) {
	f.Add([]byte("From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001\nSubject: [PATCH 1/1] x\n\n---\n--- a/f\n+++ b/f\n@@ -0,0 +1 @@\n+1\n"))
	f.Add([]byte("\n\nFrom a@b Tue Jan  1 00:00:00 2000\nSubject: [PATCH 0/2] cover\n\nFrom a@b Wed x\nSubject: y\n\ndiff --git a/x b/x\n"))
	f.Add([]byte("--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n"))
	f.Add([]byte("From \n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		mails := splitMbox(data)
		if mails != nil {
			joined := bytes.Join(mails, nil)
			if !bytes.HasSuffix(data, joined) {
				t.Fatalf("mails are not the tail of the input")
			}
			for i, m := range mails {
				if !mboxFrom.Match(m) {
					t.Fatalf("mail %d does not start with a separator: %q", i, m)
				}
			}
		}
		for _, mbox := range []bool{false, true} {
			ps, err := parsePatches("fuzz.mbox", data, mbox)
			if err != nil {
				if !strings.Contains(err.Error(), "fuzz.mbox") {
					t.Fatalf("error does not name the file: %v", err)
				}
				continue
			}
			for i, p := range ps {
				if p.Index != i+1 || p.Count != len(ps) || len(p.Data) == 0 {
					t.Fatalf("patch %d: index %d of %d, %d bytes", i, p.Index, p.Count, len(p.Data))
				}
			}
		}
	})
}
