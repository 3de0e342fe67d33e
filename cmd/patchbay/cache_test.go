package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func runRoot(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	root := newRootCommand()
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&out)
	err := root.Execute()
	return out.String(), err
}

func TestCacheLsAndPrune(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string, age time.Duration) {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		when := time.Now().Add(-age)
		os.Chtimes(p, when, when)
	}
	write("kernels/aaaa/info.json", `{"key":"aaaa","release":"6.12.117","variant":"fallback","source":"debian:linux-source-6.12=6.12.117-1",
		"stack":["0001-ext4-fall-back.patch: [PATCH] ext4: fall back"]}`, 0)
	write("kernels/aaaa/bzImage", strings.Repeat("k", 5000), 0)
	write("kernels/aaaa/last-used", "", 50*24*time.Hour)
	write("kernels/bbbb/info.json", `{"key":"bbbb","release":"6.12.117"}`, 0)
	write("kernels/bbbb/bzImage", "k", 0)
	write("kernels/bbbb/last-used", "", time.Hour)
	write("images/cafe/image.json", "{}", 24*time.Hour)
	write("ccache/0/x", strings.Repeat("c", 10000), 0)

	out, err := runRoot(t, "--cache", dir, "cache", "ls")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"KERNELS", "aaaa", "6.12.117", "fallback", "1: 0001-ext4-fall-back.patch: [PATCH] ext4: fall back", "50d ago", "1h ago", "IMAGES", "cafe", "CCACHE"} {
		if !strings.Contains(out, want) {
			t.Errorf("cache ls lacks %q:\n%s", want, out)
		}
	}

	out, err = runRoot(t, "--cache", dir, "cache", "prune", "--older-than", "720h")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(out, "removed kernel aaaa") || strings.Contains(out, "bbbb") || !strings.Contains(out, "removed 1 item(s)") {
		t.Errorf("prune:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(dir, "kernels/aaaa")); err == nil {
		t.Error("kernel aaaa still there")
	}
	if _, err := os.Stat(filepath.Join(dir, "kernels/bbbb")); err != nil {
		t.Error("recent kernel bbbb removed")
	}
}
