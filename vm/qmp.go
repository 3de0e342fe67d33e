package vm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"syscall"
	"time"

	"github.com/digitalocean/go-qemu/qmp"
)

// QMP goes through go-qemu's qmp.SocketMonitor. This file is the thin layer
// that makes it safe to use on a QEMU that may be wedged, stopped or gone:
// the handshake and every command under a deadline, events drained for the
// whole life of the connection, and a monitor that refuses further commands
// once one was abandoned.
//
// Limits of go-qemu that this layer cannot remove without forking it:
//   - Its reader skips any line that is not JSON, so a garbled reply is not
//     an error: the command waits for its deadline instead.
//   - Its reader blocks when a reply arrives with no Run waiting (an
//     unsolicited or stale reply); events behind it wait until the next Run
//     or Disconnect. Hence: after an abandoned command no command is sent
//     again (runQMP fails at once), and a reply not carrying our id breaks
//     the monitor too.
//   - Its reader hands a reply over in its scanner's buffer without a
//     copy, and its next read reuses that buffer: a reply of a few KiB, or
//     a burst of messages while Run decodes, can overwrite the reply (the
//     race detector flags query-block). Our commands' replies are short,
//     and a damaged one mostly fails to decode or to carry our id, which is
//     reported. A message over 64 KiB ends its reader.
//   - Connect decodes the greeting with a json.Decoder, which buffers
//     without bound until the handshake deadline, and which may read past
//     the capabilities reply: events QEMU sends in that same read are lost.
//     The window is the moment between QEMU's reply and our read of it,
//     just after QEMU started, when a guest has nothing to report yet; the
//     fake-peer tests wait for a command before sending events.
//   - Disconnect during a Connect that completes at that very moment reads
//     the monitor's reply channel unsynchronized (go-qemu takes no lock);
//     the window is the instant the handshake deadline expires.
//   - An event is handed over when our goroutine receives it, so a reply
//     can overtake the recording of the event just before it; the harness
//     waits on Halted and Exited, which are closed only after recording.

// connectQMP waits (up to 30 s and ctx) for QEMU's QMP socket, then does
// the handshake within 10 s and ctx, and starts recording events.
func (m *Machine) connectQMP(ctx context.Context, sock string) error {
	deadline := time.Now().Add(30 * time.Second)
	poll := 5 * time.Millisecond
	for {
		mon, err := qmp.NewSocketMonitor("unix", sock, 2*time.Second)
		if err == nil {
			return m.handshake(ctx, mon, 10*time.Second)
		}
		select {
		case <-m.exited:
			return fmt.Errorf("qemu exited before QMP was up: %v", m.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("waiting for QMP socket: %w", ctx.Err())
		case <-time.After(poll):
		}
		// QEMU makes the socket ~0.1 s after its start: look often at
		// first (a restored run waits on this), then every 100 ms.
		poll = min(poll*2, 100*time.Millisecond)
		if time.Now().After(deadline) {
			return fmt.Errorf("no QMP socket after 30s: %v", err)
		}
	}
}

// handshake runs go-qemu's Connect (greeting and qmp_capabilities) within
// timeout and ctx; on failure the connection is closed. On success mon is
// the Machine's monitor and its events are recorded until it ends.
func (m *Machine) handshake(ctx context.Context, mon *qmp.SocketMonitor, timeout time.Duration) error {
	// Count a listener before Connect starts go-qemu's reader: with none,
	// it drops events, and one could come before we take the channel.
	mon.Events(context.Background())
	done := make(chan error, 1)
	go func() { done <- mon.Connect() }()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var err error
	select {
	case err = <-done:
	case <-timer.C:
		err = fmt.Errorf("no answer within %s", timeout)
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err == nil && mon.Version.QEMU.Major == 0 {
		err = errors.New("the greeting names no QEMU version: not a QMP peer")
	}
	if err != nil {
		abandonMonitor(mon, done)
		switch {
		case errors.Is(err, io.EOF), errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ECONNRESET):
			err = errors.New("connection closed by the peer")
		case errors.Is(err, io.ErrUnexpectedEOF):
			err = errors.New("connection closed in the middle of a message")
		}
		return fmt.Errorf("QMP handshake: %w", err)
	}
	events, _ := mon.Events(context.Background())
	m.mon = mon
	m.mu.Lock()
	m.qmpUp = true
	m.mu.Unlock()
	go func() {
		defer close(m.qmpDone)
		for ev := range events {
			m.handleEvent(ev.Event, ev.Data)
		}
	}()
	return nil
}

// abandonMonitor closes a monitor whose Connect (reporting to done) failed
// or is still running. If Connect still succeeds, go-qemu's reader has
// started: its events are drained so that it can see the closed
// connection and end.
func abandonMonitor(mon *qmp.SocketMonitor, done <-chan error) {
	// Disconnect closes the connection, which ends a Connect blocked in a
	// read; it then waits for the reader, so it runs on its own.
	go mon.Disconnect()
	go func() {
		if <-done == nil {
			events, _ := mon.Events(context.Background())
			for range events {
			}
		}
	}()
}

// handleEvent records one QMP event.
func (m *Machine) handleEvent(event string, data map[string]any) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.events = append(m.events, event)
	switch event {
	case "BLOCK_IO_ERROR":
		m.ioError = true
	case "SHUTDOWN":
		// With -no-reboot a guest reset ends QEMU; SHUTDOWN says why.
		m.shutdown, _ = data["reason"].(string)
		if data["guest"] == true && m.shutdown == "guest-reset" {
			m.guestReset = true
		}
	case "GUEST_PANICKED":
		if !m.panicked {
			m.panicked = true
			close(m.halted)
		}
	}
}

// runQMP runs one command with our id and returns its "return" value. It
// gives up after m.qmpTimeout or when ctx ends; the command is then left
// waiting inside go-qemu (holding its lock, and due to take whatever reply
// comes next), so the monitor is marked broken and every later command
// fails at once.
func (m *Machine) runQMP(ctx context.Context, command string, args any) (json.RawMessage, error) {
	if m.mon == nil {
		return nil, fmt.Errorf("QMP %s: not connected", command)
	}
	m.mu.Lock()
	if m.qmpBroken != nil {
		err := m.qmpBroken
		m.mu.Unlock()
		return nil, fmt.Errorf("QMP %s: not sent, the monitor is unusable: %w", command, err)
	}
	m.qmpSeq++
	id := fmt.Sprintf("pb%d", m.qmpSeq) // a string: go-qemu decodes ids as strings
	m.mu.Unlock()
	req, err := json.Marshal(struct {
		Execute   string `json:"execute"`
		Arguments any    `json:"arguments,omitempty"`
		ID        string `json:"id"`
	}{command, args, id})
	if err != nil {
		return nil, fmt.Errorf("QMP %s: %w", command, err)
	}
	type result struct {
		raw []byte
		err error
	}
	ch := make(chan result, 1)
	go func() {
		// The newline ends the message for a line-reading peer; QEMU's
		// parser does not need it.
		raw, err := m.mon.Run(append(req, '\n'))
		ch <- result{raw, err}
	}()
	timer := time.NewTimer(m.qmpTimeout)
	defer timer.Stop()
	select {
	case r := <-ch:
		if r.err != nil {
			// A closed reply channel reads as an empty reply; a closed
			// socket fails the write. QEMU's own errors are neither.
			var syntax *json.SyntaxError
			var op *net.OpError
			if (errors.As(r.err, &syntax) || errors.As(r.err, &op)) && m.qmpEnded() {
				return nil, fmt.Errorf("QMP %s: the monitor connection has ended (%v)", command, r.err)
			}
			return nil, fmt.Errorf("QMP %s: %w", command, r.err)
		}
		var reply struct {
			ID     json.RawMessage `json:"id"`
			Return json.RawMessage `json:"return"`
		}
		if err := json.Unmarshal(r.raw, &reply); err != nil {
			return nil, fmt.Errorf("QMP %s: reply %s: %w", command, quoteShort(r.raw), err)
		}
		if string(reply.ID) != strconv.Quote(id) {
			err := fmt.Errorf("the reply to %s (id %q) was %s: replies are out of step", command, id, quoteShort(r.raw))
			m.breakQMP(err)
			return nil, fmt.Errorf("QMP %s: %w", command, err)
		}
		return reply.Return, nil
	case <-timer.C:
		err := fmt.Errorf("no answer in %s (QEMU stopped or wedged)", m.qmpTimeout)
		m.breakQMP(fmt.Errorf("%s: %w", command, err))
		return nil, fmt.Errorf("QMP %s: %w", command, err)
	case <-ctx.Done():
		m.breakQMP(fmt.Errorf("%s abandoned: %w", command, ctx.Err()))
		return nil, fmt.Errorf("QMP %s: %w", command, ctx.Err())
	}
}

// breakQMP records the first reason the monitor can no longer be trusted.
func (m *Machine) breakQMP(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.qmpBroken == nil {
		m.qmpBroken = err
	}
}

// qmpEnded reports whether go-qemu's reader has stopped (the peer closed
// the connection). It closes its reply channel a moment before its event
// channel, so wait that moment.
func (m *Machine) qmpEnded() bool {
	select {
	case <-m.qmpDone:
		return true
	case <-time.After(100 * time.Millisecond):
		return false
	}
}

// closeQMP disconnects the monitor and waits (bounded) until the last
// event is recorded.
func (m *Machine) closeQMP() {
	if m.mon == nil {
		return
	}
	// Disconnect waits for go-qemu's reader, which a misbehaving peer can
	// hold: never wait on it unbounded.
	go m.mon.Disconnect()
	select {
	case <-m.qmpDone:
	case <-time.After(5 * time.Second):
	}
}

// quoteShort quotes a peer's message for an error, cut to a readable size.
func quoteShort(b []byte) string {
	if len(b) > 120 {
		return strconv.Quote(string(b[:117])) + "..."
	}
	return strconv.Quote(string(b))
}
