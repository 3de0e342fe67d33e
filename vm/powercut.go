package vm

import (
	"errors"
	"syscall"
	"time"
)

// PowerCut ends the machine the way a power failure would: QMP quit, so
// the guest gets no chance to write back its page cache or commit its
// journal. What the guest had already written to a raw disk is in the
// host file (QEMU writes it there as each request completes; the host
// itself does not crash), so the same disk can be booted again. If QEMU
// does not exit within 5 s its process group is killed. Close must still
// be called.
func (m *Machine) PowerCut() error {
	select {
	case <-m.exited:
		return errors.New("power cut: QEMU had already exited")
	default:
	}
	if m.mon != nil {
		// The reply may never come: QEMU is gone by then.
		go m.mon.Run([]byte(`{"execute":"quit"}`))
	}
	select {
	case <-m.exited:
	case <-time.After(5 * time.Second):
		syscall.Kill(-m.cmd.Process.Pid, syscall.SIGKILL)
		<-m.exited
	}
	return nil
}
