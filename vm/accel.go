package vm

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// ProbeAccel decides between KVM and TCG for kernel. /dev/kvm existing is
// not enough: some hosts expose a paravirtual KVM that crashes ordinary
// guests. So it boots the kernel under KVM with no root device and expects
// the kernel's own "VFS: Unable to mount root fs" panic within the deadline.
// It returns "kvm" or "tcg" and a one-line reason.
func ProbeAccel(ctx context.Context, qemu, kernel string) (string, string) {
	if qemu == "" {
		qemu = "qemu-system-x86_64"
	}
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return "tcg", "no usable /dev/kvm (" + err.Error() + "): using TCG"
	}
	f.Close()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu,
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-machine", "pc", "-accel", "kvm", "-cpu", "host", "-m", "256",
		"-kernel", kernel,
		"-append", "console=ttyS0 panic=-1 pci=noacpi root=/dev/patchbay-probe",
		"-serial", "stdio")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err = cmd.Run()
	text := out.String()
	if strings.Contains(text, "Unable to mount root fs") {
		return "kvm", "KVM probe boot reached the root mount in " + time.Since(start).Round(time.Millisecond).String()
	}
	why := "no root-mount panic within 20s"
	if err != nil && ctx.Err() == nil {
		why = err.Error()
	}
	return "tcg", "KVM is present but a probe boot failed (" + why + "): using TCG"
}
