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

	"github.com/digitalocean/go-qemu/qmp"
)

// A fake QMP peer: QEMU cannot be made to send garbage, close its socket
// half way or stop answering on cue, so these faults are played by a unix
// socket server. They test what our layer over go-qemu guarantees (see
// qmp.go): a clear error within the deadline, never a hang. The same code
// against a real QEMU is in qemu_test.go.

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
	if cmd, _ := p.command(); cmd != "qmp_capabilities" {
		p.t.Errorf("fake peer: first command %q, want qmp_capabilities", cmd)
	}
	p.send(`{"return": {}}`)
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
	t.Cleanup(m.closeQMP)
	return m
}

// eventually fails the test unless cond holds within d: an event is
// recorded by our goroutine a moment after go-qemu hands it over.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(d); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("%s: not after %s", what, d)
		}
	}
}

// TestQMPEvents: events sent between a command and its reply are all
// recorded, in order, with their effects; a second GUEST_PANICKED is
// harmless. (The peer waits for a command first: go-qemu's Connect may
// swallow events sent in the same read as the capabilities reply.)
func TestQMPEvents(t *testing.T) {
	m := connected(t, func(p *peer, done <-chan struct{}) {
		p.handshake()
		cmd, id := p.command()
		p.send(`{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "BLOCK_IO_ERROR", "data": {"device": "", "node-name": "drive1", "operation": "write", "action": "stop", "nospace": false, "reason": "Input/output error"}}`)
		p.send(`{"timestamp": {"seconds": 1, "microseconds": 3}, "event": "GUEST_PANICKED", "data": {"action": "pause", "info": {"type": "hyper-v"}}}`)
		p.send(`{"timestamp": {"seconds": 1, "microseconds": 4}, "event": "GUEST_PANICKED", "data": {"action": "pause"}}`)
		p.send(`{"timestamp": {"seconds": 1, "microseconds": 5}, "event": "SHUTDOWN", "data": {"guest": true, "reason": "guest-reset"}}`)
		if cmd == "query-status" {
			p.send(`{"return": {"status": "guest-panicked", "singlestep": false, "running": false}, "id": ` + id + `}`)
		}
		<-done
	})
	var status string
	var err error
	within(t, 5*time.Second, "Status", func() { status, err = m.Status() })
	if err != nil || status != "guest-panicked" {
		t.Fatalf("Status = %q, %v; want guest-panicked", status, err)
	}
	want := []string{"BLOCK_IO_ERROR", "GUEST_PANICKED", "GUEST_PANICKED", "SHUTDOWN"}
	eventually(t, 2*time.Second, "all four events recorded", func() bool { return len(m.Events()) >= len(want) })
	if !slices.Equal(m.Events(), want) {
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

// TestQMPEventsWithoutCommands: events keep being recorded while no
// command runs (go-qemu's event channel is unbuffered: nobody reading it
// would stall its reader), and the stream's end closes qmpDone.
func TestQMPEventsWithoutCommands(t *testing.T) {
	m := connected(t, func(p *peer, done <-chan struct{}) {
		p.handshake()
		time.Sleep(100 * time.Millisecond) // past the handshake's read
		for range 50 {
			p.send(`{"event": "BLOCK_IO_ERROR", "data": {}, "timestamp": {"seconds": 1, "microseconds": 0}}`)
		}
		p.send(`{"event": "SHUTDOWN", "data": {"guest": false, "reason": "host-signal"}, "timestamp": {"seconds": 1, "microseconds": 0}}`)
	})
	within(t, 3*time.Second, "end of the event stream", func() { <-m.qmpDone })
	if n := len(m.Events()); n != 51 || m.ShutdownReason() != "host-signal" || !m.IOError() {
		t.Errorf("%d events, shutdown %q, io error %v; want 51, host-signal, true", n, m.ShutdownReason(), m.IOError())
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
			_, id := p.command()
			p.send(`{"event": "SHUTDOWN", "data": ` + c.data + `, "timestamp": {"seconds": 1, "microseconds": 0}}`)
			p.send(`{"return": {"status": "shutdown", "running": false}, "id": ` + id + `}`)
			<-done
		})
		if _, err := m.Status(); err != nil {
			t.Fatal(err)
		}
		eventually(t, 2*time.Second, "SHUTDOWN recorded", func() bool { return len(m.Events()) == 1 })
		var want struct{ Reason string }
		json.Unmarshal([]byte(c.data), &want)
		if m.GuestReset() != c.reset || m.ShutdownReason() != want.Reason || m.Panicked() {
			t.Errorf("SHUTDOWN %s: guest reset %v shutdown %q panicked %v; want %v %q false",
				c.data, m.GuestReset(), m.ShutdownReason(), m.Panicked(), c.reset, want.Reason)
		}
	}
}

// TestQMPHandshakeFaults: a peer that is not QEMU, or a QEMU that dies or
// wedges before QMP is up, gives a clear error within the deadline, and
// the Machine gets no monitor.
func TestQMPHandshakeFaults(t *testing.T) {
	for _, c := range []struct {
		name  string
		serve func(p *peer, done <-chan struct{})
		want  string
	}{
		{"garbage greeting", func(p *peer, _ <-chan struct{}) { p.send("220 smtp.example.com ESMTP") }, "QMP handshake: json: cannot unmarshal number"},
		{"JSON but not QMP", func(p *peer, _ <-chan struct{}) { p.send(`{"hello": 1}`) }, "QMP handshake: connection closed by the peer"},
		{"JSON but not QMP, answers", func(p *peer, done <-chan struct{}) { p.send(`{"hello": 1}`); p.command(); p.send(`{}`); <-done }, "QMP handshake: the greeting names no QEMU version: not a QMP peer"},
		{"closes before greeting", func(p *peer, _ <-chan struct{}) {}, "QMP handshake: connection closed by the peer"},
		{"closes mid greeting", func(p *peer, _ <-chan struct{}) { fmt.Fprint(p.conn, `{"QMP": {"vers`) }, "QMP handshake: connection closed in the middle of a message"},
		{"closes after greeting", func(p *peer, _ <-chan struct{}) { p.send(qmpGreeting); p.command() }, "QMP handshake: connection closed by the peer"},
		{"refuses capabilities", func(p *peer, _ <-chan struct{}) {
			p.send(qmpGreeting)
			p.command()
			p.send(`{"error": {"class": "CommandNotFound", "desc": "nope"}}`)
		}, "QMP handshake: nope"},
		{"garbage reply", func(p *peer, done <-chan struct{}) { p.send(qmpGreeting); p.command(); p.send("\x00\x01 oops"); <-done }, "QMP handshake: invalid character"},
		{"never greets", func(p *peer, done <-chan struct{}) { <-done }, "QMP handshake: no answer within 400ms"},
		{"greets, never answers", func(p *peer, done <-chan struct{}) { p.send(qmpGreeting); <-done }, "QMP handshake: no answer within 400ms"},
		// go-qemu buffers an endless greeting until the deadline.
		{"endless line", func(p *peer, done <-chan struct{}) {
			big := strings.Repeat("x", 64<<10)
			for range 20 {
				if _, err := fmt.Fprint(p.conn, big); err != nil {
					return
				}
			}
			<-done
		}, "QMP handshake: "},
	} {
		t.Run(c.name, func(t *testing.T) {
			sock := fakeQMP(t, c.serve)
			mon, err := qmp.NewSocketMonitor("unix", sock, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			m := newMachine(Config{})
			within(t, 2*time.Second, "handshake", func() {
				err = m.handshake(context.Background(), mon, 400*time.Millisecond)
			})
			if err == nil || !strings.HasPrefix(err.Error(), c.want) {
				t.Fatalf("error %q, want %q...", err, c.want)
			}
			if m.mon != nil || m.qmpUp {
				t.Error("a failed handshake left the Machine a monitor")
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
// protocol, hangs up or never answers makes a command fail within its
// deadline with an error that says which. go-qemu skips lines that are not
// JSON objects, so garbage shows as no answer.
func TestQMPStreamFaults(t *testing.T) {
	for _, c := range []struct {
		name  string
		serve func(p *peer, done <-chan struct{})
		want  string
	}{
		{"garbage", func(p *peer, done <-chan struct{}) { p.command(); p.send("}{ not json"); <-done }, "QMP query-status: no answer in 300ms (QEMU stopped or wedged)"},
		{"array", func(p *peer, done <-chan struct{}) { p.command(); p.send(`[1, 2]`); <-done }, "QMP query-status: no answer in 300ms (QEMU stopped or wedged)"},
		{"garbled reply", func(p *peer, done <-chan struct{}) { p.command(); p.send(`{"return": {"status": "runn`); <-done }, "QMP query-status: no answer in 300ms (QEMU stopped or wedged)"},
		{"reply without id", func(p *peer, done <-chan struct{}) { p.command(); p.send(`{"return": {}}`); <-done }, `QMP query-status: the reply to query-status (id "pb1") was "{\"return\": {}}": replies are out of step`},
		{"hangs up", func(p *peer, done <-chan struct{}) {}, "QMP query-status: the monitor connection has ended"},
		{"hangs up after the command", func(p *peer, done <-chan struct{}) { p.command() }, "QMP query-status: the monitor connection has ended"},
		{"error reply", func(p *peer, done <-chan struct{}) {
			_, id := p.command()
			p.send(`{"error": {"class": "GenericError", "desc": "busy"}, "id": ` + id + `}`)
			<-done
		}, "QMP query-status: busy"},
		{"never answers", func(p *peer, done <-chan struct{}) { p.command(); <-done }, "QMP query-status: no answer in 300ms (QEMU stopped or wedged)"},
		{"answers another id", func(p *peer, done <-chan struct{}) {
			p.command()
			p.send(`{"return": {"status": "running"}, "id": "999"}`)
			<-done
		}, `QMP query-status: the reply to query-status (id "pb1") was "{\"return\": {\"status\": \"running\"}, \"id\": \"999\"}": replies are out of step`},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := connected(t, func(p *peer, done <-chan struct{}) {
				p.handshake()
				c.serve(p, done)
			})
			m.qmpTimeout = 300 * time.Millisecond
			var err error
			within(t, 2*time.Second, "Status", func() { _, err = m.Status() })
			if err == nil || !strings.HasPrefix(err.Error(), c.want) {
				t.Fatalf("Status error %q, want %q...", err, c.want)
			}
		})
	}
}

// TestQMPBrokenAfterAbandon: once a command gave up waiting (its reply
// would go to the next command inside go-qemu) or a reply came out of
// step, later commands fail at once, naming the first failure, and are
// never sent.
func TestQMPBrokenAfterAbandon(t *testing.T) {
	for _, c := range []struct {
		name  string
		reply func(p *peer, id string)
		first string
	}{
		{"late reply", func(p *peer, id string) {
			time.Sleep(500 * time.Millisecond)
			p.send(`{"return": {"status": "paused"}, "id": ` + id + `}`)
		}, "query-status: no answer in 200ms"},
		{"wrong id", func(p *peer, id string) { p.send(`{"return": {"status": "paused"}, "id": "x"}`) }, "the reply to query-status"},
	} {
		t.Run(c.name, func(t *testing.T) {
			commands := make(chan string, 10)
			m := connected(t, func(p *peer, done <-chan struct{}) {
				p.handshake()
				cmd, id := p.command()
				commands <- cmd
				c.reply(p, id)
				for {
					cmd, _ := p.command()
					if cmd == "" {
						return
					}
					commands <- cmd
				}
			})
			m.qmpTimeout = 200 * time.Millisecond
			if _, err := m.Status(); err == nil {
				t.Fatal("first Status answered")
			}
			m.qmpTimeout = 3 * time.Second
			var err error
			within(t, 100*time.Millisecond, "second Status", func() { _, err = m.Status() })
			if err == nil || !strings.Contains(err.Error(), "not sent, the monitor is unusable: "+c.first) {
				t.Fatalf("second Status error %v, want it refused because of %q", err, c.first)
			}
			time.Sleep(600 * time.Millisecond) // a command sent now would reach the peer
			if len(commands) != 1 {
				t.Errorf("peer got %d commands, want only the first", len(commands))
			}
		})
	}
}
