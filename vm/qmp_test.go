package vm

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// A fake QMP peer: QEMU cannot be made to send garbage, close its socket
// half way or stop answering on cue, so these faults are played by a unix
// socket server. The same client against a real QEMU is in qemu_test.go.

const qmpGreeting = `{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": ["oob"]}}`

// peer is one side of a fake QMP conversation.
type peer struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func (p *peer) send(line string) { fmt.Fprintf(p.conn, "%s\r\n", line) }

// command reads the next command and returns its name and id (raw JSON).
func (p *peer) command() (string, string) {
	line, err := p.r.ReadString('\n')
	if err != nil {
		return "", ""
	}
	var c struct {
		Execute string          `json:"execute"`
		ID      json.RawMessage `json:"id"`
	}
	if err := json.Unmarshal([]byte(line), &c); err != nil {
		p.t.Errorf("fake peer: client sent %q: %v", line, err)
	}
	return c.Execute, string(c.ID)
}

// handshake plays QEMU's side of the greeting and capabilities.
func (p *peer) handshake() {
	p.send(qmpGreeting)
	if cmd, id := p.command(); cmd != "qmp_capabilities" || id == "" {
		p.t.Errorf("fake peer: first command %q id %q, want qmp_capabilities with an id", cmd, id)
	}
	p.send(`{"return": {}, "id": 0}`)
}

// fakeQMP serves one connection on a fresh unix socket with serve and
// returns the socket's path. serve may block on p.done (closed when the
// test ends) to play a peer that never answers.
func fakeQMP(t *testing.T, serve func(p *peer, done <-chan struct{})) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "pbqmp") // short: unix socket paths are < 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "qmp.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	served := make(chan struct{})
	t.Cleanup(func() {
		close(done)
		l.Close()
		<-served
		os.RemoveAll(dir)
	})
	go func() {
		defer close(served)
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		serve(&peer{t: t, conn: c, r: bufio.NewReader(c)}, done)
	}()
	return sock
}

// within fails the test if f does not return in d: nothing here may hang.
func within(t *testing.T, d time.Duration, what string, f func()) {
	t.Helper()
	ok := make(chan struct{})
	go func() {
		defer close(ok)
		f()
	}()
	select {
	case <-ok:
	case <-time.After(d):
		t.Fatalf("%s: still waiting after %s", what, d)
	}
}

// connected returns a Machine whose QMP is the fake peer's.
func connected(t *testing.T, serve func(p *peer, done <-chan struct{})) *Machine {
	t.Helper()
	m := newMachine(Config{})
	sock := fakeQMP(t, serve)
	var err error
	within(t, 5*time.Second, "connectQMP", func() { err = m.connectQMP(context.Background(), sock) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.qmp.close)
	return m
}

// TestQMPEvents: events before a reply are all handled by the time the
// reply arrives, in order; a second GUEST_PANICKED is harmless.
func TestQMPEvents(t *testing.T) {
	m := connected(t, func(p *peer, done <-chan struct{}) {
		p.handshake()
		p.send(`{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "BLOCK_IO_ERROR", "data": {"device": "", "node-name": "drive1", "operation": "write", "action": "stop", "nospace": false, "reason": "Input/output error"}}`)
		p.send(`{"timestamp": {"seconds": 1, "microseconds": 3}, "event": "GUEST_PANICKED", "data": {"action": "pause", "info": {"type": "hyper-v"}}}`)
		p.send(`{"timestamp": {"seconds": 1, "microseconds": 4}, "event": "GUEST_PANICKED", "data": {"action": "pause"}}`)
		p.send(`{"timestamp": {"seconds": 1, "microseconds": 5}, "event": "SHUTDOWN", "data": {"guest": true, "reason": "guest-reset"}}`)
		if cmd, id := p.command(); cmd == "query-status" {
			p.send(`{"return": {"status": "guest-panicked", "singlestep": false, "running": false}, "id": ` + id + `}`)
		}
		<-done
	})
	// The events may still be in flight; the reply to query-status orders them.
	var status string
	var err error
	within(t, 5*time.Second, "Status", func() { status, err = m.Status() })
	if err != nil || status != "guest-panicked" {
		t.Fatalf("Status = %q, %v; want guest-panicked", status, err)
	}
	if want := []string{"BLOCK_IO_ERROR", "GUEST_PANICKED", "GUEST_PANICKED", "SHUTDOWN"}; !slices.Equal(m.Events(), want) {
		t.Errorf("events %v, want %v", m.Events(), want)
	}
	if !m.IOError() || !m.Panicked() || !m.GuestReset() || m.ShutdownReason() != "guest-reset" {
		t.Errorf("io error %v, panicked %v, guest reset %v, shutdown %q; want all set", m.IOError(), m.Panicked(), m.GuestReset(), m.ShutdownReason())
	}
	select {
	case <-m.Halted():
	default:
		t.Error("GUEST_PANICKED did not close Halted")
	}
}

// TestQMPShutdownReasons: only a reset the guest asked for is a guest reset.
func TestQMPShutdownReasons(t *testing.T) {
	for _, c := range []struct {
		data  string
		reset bool
	}{
		{`{"guest": true, "reason": "guest-reset"}`, true},
		{`{"guest": false, "reason": "host-qmp-quit"}`, false},
		{`{"guest": true, "reason": "guest-shutdown"}`, false},
		{`{"guest": false, "reason": "host-signal"}`, false},
		{`{"guest": false, "reason": "guest-reset"}`, false},
	} {
		m := connected(t, func(p *peer, done <-chan struct{}) {
			p.handshake()
			p.send(`{"event": "SHUTDOWN", "data": ` + c.data + `, "timestamp": {"seconds": 1, "microseconds": 0}}`)
			if _, id := p.command(); id != "" {
				p.send(`{"return": {"status": "shutdown", "running": false}, "id": ` + id + `}`)
			}
			<-done
		})
		if _, err := m.Status(); err != nil {
			t.Fatal(err)
		}
		var want struct{ Reason string }
		json.Unmarshal([]byte(c.data), &want)
		if m.GuestReset() != c.reset || m.ShutdownReason() != want.Reason || m.Panicked() {
			t.Errorf("SHUTDOWN %s: guest reset %v shutdown %q panicked %v; want %v %q false",
				c.data, m.GuestReset(), m.ShutdownReason(), m.Panicked(), c.reset, want.Reason)
		}
	}
}

// TestQMPHandshakeFaults: a peer that is not QEMU, or a QEMU that dies or
// wedges before QMP is up, gives a clear error within the deadline.
func TestQMPHandshakeFaults(t *testing.T) {
	for _, c := range []struct {
		name  string
		serve func(p *peer, done <-chan struct{})
		want  string
	}{
		{"garbage greeting", func(p *peer, _ <-chan struct{}) { p.send("220 smtp.example.com ESMTP") }, `QMP greeting: not a QMP greeting: "220 smtp.example.com ESMTP"`},
		{"JSON but not QMP", func(p *peer, _ <-chan struct{}) { p.send(`{"hello": 1}`) }, `QMP greeting: not a QMP greeting: "{\"hello\": 1}"`},
		{"closes before greeting", func(p *peer, _ <-chan struct{}) {}, "QMP greeting: connection closed by the peer"},
		{"closes mid greeting", func(p *peer, _ <-chan struct{}) { fmt.Fprint(p.conn, `{"QMP": {"vers`) }, `QMP greeting: connection closed in the middle of "{\"QMP\": {\"vers"`},
		{"closes after greeting", func(p *peer, _ <-chan struct{}) { p.send(qmpGreeting); p.command() }, "QMP qmp_capabilities: connection closed by the peer"},
		{"refuses capabilities", func(p *peer, _ <-chan struct{}) {
			p.send(qmpGreeting)
			p.command()
			p.send(`{"error": {"class": "CommandNotFound", "desc": "nope"}, "id": 0}`)
		}, "QMP qmp_capabilities: refused: CommandNotFound: nope"},
		{"garbage reply", func(p *peer, done <-chan struct{}) { p.send(qmpGreeting); p.command(); p.send("\x00\x01 oops"); <-done }, `QMP qmp_capabilities: reply is not JSON: "\x00\x01 oops"`},
		{"never greets", func(p *peer, done <-chan struct{}) { <-done }, "QMP greeting: no answer within 400ms"},
		{"greets, never answers", func(p *peer, done <-chan struct{}) { p.send(qmpGreeting); <-done }, "QMP qmp_capabilities: no answer within 400ms"},
		{"endless line", func(p *peer, done <-chan struct{}) {
			big := strings.Repeat("x", 64<<10)
			for range 20 {
				if _, err := fmt.Fprint(p.conn, big); err != nil {
					return
				}
			}
			<-done
		}, fmt.Sprintf("QMP greeting: message longer than %d bytes", qmpMaxLine)},
	} {
		t.Run(c.name, func(t *testing.T) {
			sock := fakeQMP(t, c.serve)
			conn, err := net.Dial("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			within(t, 3*time.Second, "handshake", func() {
				_, err = qmpHandshake(context.Background(), conn, 400*time.Millisecond, func(qmpEvent) {})
			})
			if err == nil || err.Error() != c.want {
				t.Fatalf("error %q, want %q", err, c.want)
			}
		})
	}
}

// TestQMPConnectHonoursContext: a silent peer and a missing socket end at
// ctx's deadline, and say it was the deadline.
func TestQMPConnectHonoursContext(t *testing.T) {
	silent := fakeQMP(t, func(p *peer, done <-chan struct{}) { <-done })
	missing := filepath.Join(t.TempDir(), "none.sock")
	for _, sock := range []string{silent, missing} {
		m := newMachine(Config{})
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		var err error
		within(t, 3*time.Second, "connectQMP", func() { err = m.connectQMP(ctx, sock) })
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s: error %v, want the context's deadline", sock, err)
		}
	}
}

// TestQMPStreamFaults: after the handshake, a peer that breaks the
// protocol, hangs up or never answers makes commands fail promptly with an
// error that says which.
func TestQMPStreamFaults(t *testing.T) {
	for _, c := range []struct {
		name  string
		serve func(p *peer, done <-chan struct{})
		want  string
	}{
		{"garbage", func(p *peer, done <-chan struct{}) { p.send("}{ not json"); <-done }, `QMP query-status: QMP stream broken: message 3 is not a JSON object: "}{ not json"`},
		{"array", func(p *peer, done <-chan struct{}) { p.send(`[1, 2]`); <-done }, `QMP query-status: QMP stream broken: message 3 is not a JSON object: "[1, 2]"`},
		{"neither event nor reply", func(p *peer, done <-chan struct{}) { p.send(`{"return": {}}`); <-done }, `QMP query-status: QMP stream broken: message 3 is neither an event nor a reply: "{\"return\": {}}"`},
		{"hangs up", func(p *peer, done <-chan struct{}) {}, "QMP query-status: QMP stream: connection closed by the peer"},
		{"hangs up after the command", func(p *peer, done <-chan struct{}) { p.command() }, "QMP query-status: QMP stream: connection closed by the peer"},
		{"error reply", func(p *peer, done <-chan struct{}) {
			_, id := p.command()
			p.send(`{"error": {"class": "GenericError", "desc": "busy"}, "id": ` + id + `}`)
			<-done
		}, "QMP query-status: GenericError: busy"},
		{"never answers", func(p *peer, done <-chan struct{}) { p.command(); <-done }, "QMP query-status: no answer in 300ms (QEMU stopped or wedged)"},
		{"answers another id", func(p *peer, done <-chan struct{}) {
			p.command()
			p.send(`{"return": {"status": "running"}, "id": 999}`)
			<-done
		}, "QMP query-status: no answer in 300ms (QEMU stopped or wedged)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := connected(t, func(p *peer, done <-chan struct{}) {
				p.handshake()
				c.serve(p, done)
			})
			m.qmpTimeout = 300 * time.Millisecond
			var err error
			within(t, 3*time.Second, "Status", func() { _, err = m.Status() })
			if err == nil || err.Error() != c.want {
				t.Fatalf("Status error %q, want %q", err, c.want)
			}
		})
	}
}

// TestQMPLateReplyIgnored: a reply that comes after its command gave up
// does not confuse the next command.
func TestQMPLateReplyIgnored(t *testing.T) {
	m := connected(t, func(p *peer, done <-chan struct{}) {
		p.handshake()
		_, first := p.command()
		_, second := p.command()
		p.send(`{"return": {"status": "paused"}, "id": ` + first + `}`)
		p.send(`{"return": {"status": "running"}, "id": ` + second + `}`)
		<-done
	})
	m.qmpTimeout = 200 * time.Millisecond
	if _, err := m.Status(); err == nil {
		t.Fatal("first Status answered though the peer held its reply")
	}
	m.qmpTimeout = 3 * time.Second
	if st, err := m.Status(); err != nil || st != "running" {
		t.Fatalf("second Status = %q, %v; want running (its own reply)", st, err)
	}
}
