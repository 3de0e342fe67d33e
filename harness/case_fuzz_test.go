package harness

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParseCase: decoding any case file never panics, and every error names
// the file (the case, or its local file).
func FuzzParseCase(f *testing.F) {
	for _, p := range []string{"../cases/ext4-journal-defrag/case.yaml", "../cases/ext4-iomap-defrag/case.yaml"} {
		if data, err := os.ReadFile(p); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte(goodCase))
	f.Add([]byte(inputCase))
	f.Add([]byte("name: t\nvm: {cpus: 0, scratch_mb: 99999999999}\nworkload: {duration: 9999999h}\n"))
	f.Add([]byte("name: ../x\nfilesystem: {mkfs: \"mkfs.ext4; reboot\", mount_options: \"a,$(b)\"}\n"))
	dir := f.TempDir()
	os.WriteFile(filepath.Join(dir, "fix.patch"), []byte("--- a/x\n+++ b/x\n"), 0o644)
	path := filepath.Join(dir, "case.yaml")
	f.Fuzz(func(t *testing.T, data []byte) {
		// git ranges would run git on whatever the input names: slow and
		// outside what this target checks (the decoding).
		if strings.Contains(string(data), "git:") {
			return
		}
		c, err := ParseCase(path, data)
		if err != nil {
			if !strings.Contains(err.Error(), path) && !strings.Contains(err.Error(), LocalFile(path)) {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if c.Name == "" || strings.Contains(c.Name, "/") || strings.Contains(c.Name, "..") {
			t.Fatalf("accepted unsafe name %q", c.Name)
		}
		if c.VM.CPUs < 1 || c.Workload.Duration <= 0 || c.VM.ScratchMB < 64 {
			t.Fatalf("accepted %+v %+v", c.VM, c.Workload)
		}
	})
}
