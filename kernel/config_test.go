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
