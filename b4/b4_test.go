package b4

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"patchbay/kernel"
)

// threadMbox writes a thread as lore serves it: a cover letter and n
// patches replying to it, each with a real diff.
func threadMbox(t *testing.T, n int) string {
	t.Helper()
	var b strings.Builder
	mail := func(i int, subject, body string) {
		fmt.Fprintf(&b, "From mboxrd@z Thu Jan  1 00:00:00 1970\nFrom: A Developer <dev@example.org>\nDate: Tue, 22 Oct 2024 19:10:%02d +0800\nSubject: %s\nMessage-ID: <20241022-%d-dev@example.org>\n", i, subject, i)
		if i > 0 {
			b.WriteString("In-Reply-To: <20241022-0-dev@example.org>\nReferences: <20241022-0-dev@example.org>\n")
		}
		fmt.Fprintf(&b, "\n%s\n", body)
	}
	mail(0, fmt.Sprintf("[PATCH 0/%d] ext4: a series", n), "The cover letter.\n")
	for i := 1; i <= n; i++ {
		diff := fmt.Sprintf("Change %d.\n\nSigned-off-by: A Developer <dev@example.org>\n---\n f%d | 1 +\n 1 file changed, 1 insertion(+)\n\ndiff --git a/f%d b/f%d\nnew file mode 100644\nindex 0000000..e69de29\n--- /dev/null\n+++ b/f%d\n@@ -0,0 +1 @@\n+%d\n-- \n2.39.2\n", i, i, i, i, i, i)
		mail(i, fmt.Sprintf("[PATCH %d/%d] ext4: change %d", i, n, i), diff)
	}
	p := filepath.Join(t.TempDir(), "thread.mbx")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func needB4(t *testing.T) {
	if _, err := exec.LookPath("b4"); err != nil {
		t.Skip("b4 not installed (ci/setup.sh installs it)")
	}
}

// b4 am -m on a local thread gives the series' patches, cover letter left
// out, in an mbox the patch stack reads as 3 patches.
func TestB4AmLocalMbox(t *testing.T) {
	needB4(t)
	thread := threadMbox(t, 3)
	mbox, err := Am(context.Background(), "b4", "20241022-0-dev@example.org", thread, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(mbox)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		if !strings.Contains(string(data), fmt.Sprintf("ext4: change %d", i)) {
			t.Errorf("mbox lacks patch %d:\n%s", i, data)
		}
	}
	if strings.Contains(string(data), "The cover letter.") {
		t.Error("cover letter in the patch mbox")
	}
	patches, err := kernel.ExpandPatches([]string{mbox})
	if err != nil || len(patches) != 3 {
		t.Fatalf("ExpandPatches = %v, %v: want 3 patches", patches, err)
	}
}

func TestB4AmErrors(t *testing.T) {
	ctx := context.Background()
	if _, err := Am(ctx, "b4", "-o/etc@x", "", t.TempDir()); err == nil || !strings.Contains(err.Error(), "is not a message-id") {
		t.Errorf("option as msgid: %v", err)
	}
	if _, err := Am(ctx, "patchbay-no-such-b4", "a@b.org", "", t.TempDir()); err == nil || !strings.Contains(err.Error(), "b4 is not installed (Debian: apt-get install b4)") {
		t.Errorf("no b4: %v", err)
	}
	needB4(t)
	// No network, whatever the host has: a proxy nobody listens on.
	t.Setenv("HTTPS_PROXY", "http://127.0.0.1:1")
	t.Setenv("https_proxy", "http://127.0.0.1:1")
	if _, err := Am(ctx, "b4", "20241022111059.2566137-1-yi.zhang@huaweicloud.com", "", t.TempDir()); err == nil || !strings.Contains(err.Error(), "cannot reach lore.kernel.org (no network?)") {
		t.Errorf("no network: %v", err)
	}
	// A thread without the message-id: b4 finds nothing to write.
	if _, err := Am(ctx, "b4", "nosuch@example.org", threadMbox(t, 1), t.TempDir()); err == nil {
		t.Error("unknown message-id in a local thread: no error")
	}
}
