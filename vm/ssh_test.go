package vm

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// sshMachine is a Machine without QEMU whose forwarded port is port.
func sshMachine(t *testing.T, port int) *Machine {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	m := newMachine(Config{Signer: signer, HostKey: signer.PublicKey()})
	m.port = port
	return m
}

// listen serves every connection on 127.0.0.1 with serve, which holds it
// until the test ends; it returns the port.
func listen(t *testing.T, serve func(net.Conn)) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	t.Cleanup(func() {
		close(done)
		l.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				serve(c)
				<-done
			})
		}
	})
	return l.Addr().(*net.TCPAddr).Port
}

// refusedPort is a 127.0.0.1 port nothing listens on.
func refusedPort(t *testing.T) int {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// TestWaitReadyDeadline: whatever sits on the port (a QEMU forwarding to a
// guest that is not up yet accepts and says nothing; a peer that sends a
// banner and stalls the key exchange; nothing at all), WaitReady gives up
// at ctx's deadline with ErrBoot and the last reason.
func TestWaitReadyDeadline(t *testing.T) {
	for _, c := range []struct {
		name string
		port int
		want string
	}{
		{"accepts, silent", listen(t, func(net.Conn) {}), "no sshd banner yet"},
		{"banner, then silent", listen(t, func(c net.Conn) { c.Write([]byte("SSH-2.0-OpenSSH_9.2p1 fake\r\n")) }), "i/o timeout"},
		{"refuses", refusedPort(t), "connection refused"},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := sshMachine(t, c.port)
			const deadline = 1500 * time.Millisecond
			ctx, cancel := context.WithTimeout(context.Background(), deadline)
			defer cancel()
			start := time.Now()
			var err error
			within(t, 10*time.Second, "WaitReady", func() { err = m.WaitReady(ctx) })
			// The banner probe has a 1 s timeout and the handshake 15 s:
			// both must be cut to the deadline, not run past it.
			if el := time.Since(start); el > deadline+500*time.Millisecond {
				t.Errorf("WaitReady returned %s after a %s deadline", el.Round(time.Millisecond), deadline)
			}
			if !errors.Is(err, ErrBoot) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want ErrBoot saying %q", err, c.want)
			}
		})
	}
}

// TestWaitReadyCancel: Ctrl-C (a cancel with no deadline) ends a stalled
// SSH key exchange at once, not after the 15 s handshake timeout.
func TestWaitReadyCancel(t *testing.T) {
	banner := make(chan struct{}, 16)
	port := listen(t, func(c net.Conn) {
		c.Write([]byte("SSH-2.0-OpenSSH_9.2p1 fake\r\n"))
		banner <- struct{}{}
	})
	m := sshMachine(t, port)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		// The banner probe's connection, then the handshake's.
		<-banner
		<-banner
		time.Sleep(200 * time.Millisecond)
		cancel()
	}()
	var err error
	within(t, 5*time.Second, "WaitReady after cancel", func() { err = m.WaitReady(ctx) })
	if !errors.Is(err, ErrBoot) || !errors.Is(ctx.Err(), context.Canceled) {
		t.Fatalf("error %v, want ErrBoot after the cancel", err)
	}
}

// TestWaitReadyQEMUGone: a QEMU that exits or a guest that panics ends the
// wait at once with the error that says which.
func TestWaitReadyQEMUGone(t *testing.T) {
	for _, c := range []struct {
		name string
		end  func(*Machine)
		want error
	}{
		{"exited", func(m *Machine) { close(m.exited) }, ErrExited},
		{"panicked", func(m *Machine) { m.handleEvent("GUEST_PANICKED", nil) }, ErrPanicked},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := sshMachine(t, listen(t, func(net.Conn) {}))
			time.AfterFunc(300*time.Millisecond, func() { c.end(m) })
			start := time.Now()
			var err error
			within(t, 5*time.Second, "WaitReady", func() { err = m.WaitReady(context.Background()) })
			// At once: not after the banner probe's 1 s timeout.
			if el := time.Since(start); el > 800*time.Millisecond {
				t.Errorf("WaitReady returned %s after QEMU went at 300ms", el.Round(time.Millisecond))
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("error %v, want %v", err, c.want)
			}
		})
	}
}
