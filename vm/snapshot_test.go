package vm

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckPath(t *testing.T) {
	for _, p := range []string{"/root/.cache/patchbay/snapshots/ab12/state", "/tmp/pbscratch123/root.qcow2", "/a/b_c+d-e.f"} {
		if err := CheckPath(p); err != nil {
			t.Errorf("CheckPath(%q) = %v", p, err)
		}
	}
	for _, p := range []string{"relative/state", "/tmp/a'b", "/tmp/a b", "/tmp/$(reboot)", "/tmp/a,b", "/tmp/a;b", "/tmp/a\nb", "/tmp/é"} {
		err := CheckPath(p)
		if err == nil || !errors.Is(err, ErrNoSnapshot) {
			t.Errorf("CheckPath(%q) = %v, want ErrNoSnapshot", p, err)
		}
	}
}

func TestQemuArgsSnapshot(t *testing.T) {
	cold := strings.Join(qemuArgs(Config{Kernel: "/k", RootImage: "/img"}, 1, "/s"), " ")
	if !strings.Contains(cold, "file=/img,if=virtio,format=raw,snapshot=on") || strings.Contains(cold, "-incoming") {
		t.Errorf("cold args: %s", cold)
	}
	args := qemuArgs(Config{Kernel: "/k", RootImage: "/img", RootOverlay: "/o.qcow2", Incoming: "/st"}, 1, "/s")
	joined := strings.Join(args, " ")
	if strings.Contains(joined, "/img") || !strings.Contains(joined, "file=/o.qcow2,if=virtio,format=qcow2,id=root") {
		t.Errorf("restore args: %s", joined)
	}
	if args[len(args)-3] != "-S" || args[len(args)-2] != "-incoming" || args[len(args)-1] != "exec:cat '/st'" {
		t.Errorf("incoming args: %q", args[len(args)-3:])
	}
}
