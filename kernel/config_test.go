package kernel

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseFragmentRejectsJunkWithLine(t *testing.T) {
	p := filepath.Join(t.TempDir(), "bad.config")
	os.WriteFile(p, []byte("# comment\nCONFIG_A=y\n\nCONFIG_B y\n"), 0o644)
	_, err := parseFragment(p)
	if err == nil || !strings.Contains(err.Error(), "bad.config:4:") {
		t.Fatalf("err = %v, want bad.config:4", err)
	}
}

func TestVerifyConfigNamesDroppedSymbols(t *testing.T) {
	p := filepath.Join(t.TempDir(), "debug.config")
	os.WriteFile(p, []byte("CONFIG_PROVE_LOCKING=y\n# CONFIG_SLUB_TINY is not set\nCONFIG_NR_CPUS=8\nCONFIG_LKDTM=y\n"), 0o644)
	reqs, err := parseFragment(p)
	if err != nil {
		t.Fatal(err)
	}
	good := []byte("CONFIG_PROVE_LOCKING=y\n# CONFIG_SLUB_TINY is not set\nCONFIG_NR_CPUS=8\nCONFIG_LKDTM=y\n")
	if err := verifyConfig(reqs, good); err != nil {
		t.Fatalf("good config: %v", err)
	}
	// olddefconfig dropped LKDTM (missing dependency) and kept SLUB_TINY.
	bad := []byte("CONFIG_PROVE_LOCKING=y\nCONFIG_SLUB_TINY=y\nCONFIG_NR_CPUS=8\n")
	err = verifyConfig(reqs, bad)
	if err == nil {
		t.Fatal("dropped symbols not reported")
	}
	for _, want := range []string{"debug.config:4: CONFIG_LKDTM=y requested", "CONFIG_LKDTM=n", "debug.config:2: CONFIG_SLUB_TINY=n requested"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func TestShippedFragmentsParse(t *testing.T) {
	for _, f := range []string{"../kconfig/base.config", "../kconfig/debug.config"} {
		reqs, err := parseFragment(f)
		if err != nil {
			t.Fatal(err)
		}
		if len(reqs) < 5 {
			t.Errorf("%s: only %d symbols", f, len(reqs))
		}
	}
}

// A later fragment overrides an earlier one (as merge_config.sh merges them):
// the check holds the last value asked for and blames the fragment that asked.
func TestLaterFragmentOverridesEarlier(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "base.config")
	noTHP := filepath.Join(dir, "no-thp.config")
	os.WriteFile(base, []byte("CONFIG_TRANSPARENT_HUGEPAGE=y\nCONFIG_EXT4_FS=y\n"), 0o644)
	os.WriteFile(noTHP, []byte("# drop large folios\n# CONFIG_TRANSPARENT_HUGEPAGE is not set\n"), 0o644)
	var reqs []configRequest
	for _, f := range []string{base, noTHP} {
		r, err := parseFragment(f)
		if err != nil {
			t.Fatal(err)
		}
		reqs = append(reqs, r...)
	}
	merged := laterWins(reqs)
	if len(merged) != 2 {
		t.Fatalf("merged = %+v, want 2 requests", merged)
	}
	final := []byte("# CONFIG_TRANSPARENT_HUGEPAGE is not set\nCONFIG_EXT4_FS=y\n")
	if err := verifyConfig(merged, final); err != nil {
		t.Fatalf("override rejected: %v", err)
	}
	if err := verifyConfig(reqs, final); err == nil {
		t.Fatal("unmerged requests passed: the test does not exercise the override")
	}
	// The order matters: the other way round, THP=y is the last word.
	merged = laterWins(append(append([]configRequest{}, reqs[2:]...), reqs[:2]...))
	err := verifyConfig(merged, final)
	if err == nil || !strings.Contains(err.Error(), "base.config:1: CONFIG_TRANSPARENT_HUGEPAGE=y requested") {
		t.Fatalf("err = %v, want base.config:1 blamed", err)
	}
}
