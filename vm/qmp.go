package vm

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"
)

// A QMP client of our own, over any net.Conn: the greeting and the
// capabilities handshake under a deadline, commands matched to replies by
// id, events handed to a callback, and a stream that stops with an error
// naming the message when the peer sends something that is not QMP (a
// library that skips bad lines, or blocks its reader on a reply nobody
// waits for, can lose a GUEST_PANICKED without a word).

// qmpMaxLine bounds one QMP message, so a peer that never sends a newline
// cannot make us buffer without end (query-block replies are a few KiB).
const qmpMaxLine = 1 << 20

// qmpEvent is one asynchronous QMP event.
type qmpEvent struct {
	Event string         `json:"event"`
	Data  map[string]any `json:"data"`
}

// qmpMessage is any message QEMU sends after the greeting.
type qmpMessage struct {
	Event  string          `json:"event"`
	Data   map[string]any  `json:"data"`
	ID     *uint64         `json:"id"`
	Return json.RawMessage `json:"return"`
	Error  *struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	} `json:"error"`
}

type qmpReply struct {
	ret json.RawMessage
	err error
}

type qmpClient struct {
	conn    net.Conn
	onEvent func(qmpEvent)

	wmu sync.Mutex // one writer at a time

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]chan qmpReply
	err     error         // why reading stopped; set before done is closed
	done    chan struct{} // closed when the reader has stopped
}

// qmpHandshake reads QEMU's greeting and negotiates capabilities on conn,
// all within timeout (and ctx), then reads messages until the connection
// ends. onEvent is called from the reader goroutine, in order. On error
// conn is closed.
func qmpHandshake(ctx context.Context, conn net.Conn, timeout time.Duration, onEvent func(qmpEvent)) (*qmpClient, error) {
	limit := time.Now().Add(timeout)
	conn.SetDeadline(earlier(ctx, limit))
	// A cancelled ctx ends the reads at once.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	q := &qmpClient{conn: conn, onEvent: onEvent, nextID: 1, pending: map[uint64]chan qmpReply{}, done: make(chan struct{})}
	br := bufio.NewReaderSize(conn, qmpMaxLine)
	fail := func(what string, err error) (*qmpClient, error) {
		stop()
		conn.Close()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("QMP %s: %w", what, ctx.Err())
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			if earlier(ctx, limit).Before(limit) {
				// ctx's deadline came first; ctx.Err may lag it by a moment.
				return nil, fmt.Errorf("QMP %s: %w", what, context.DeadlineExceeded)
			}
			return nil, fmt.Errorf("QMP %s: no answer within %s", what, timeout)
		}
		return nil, fmt.Errorf("QMP %s: %w", what, err)
	}
	line, err := readQMPLine(br)
	if err != nil {
		return fail("greeting", err)
	}
	n := 1 // messages read, for errors about later ones
	var greet struct {
		QMP json.RawMessage `json:"QMP"`
	}
	if err := json.Unmarshal(line, &greet); err != nil || greet.QMP == nil {
		return fail("greeting", fmt.Errorf("not a QMP greeting: %s", quoteShort(line)))
	}
	if _, err := conn.Write([]byte(`{"execute":"qmp_capabilities","id":0}` + "\n")); err != nil {
		return fail("qmp_capabilities", err)
	}
	for {
		line, err := readQMPLine(br)
		if err != nil {
			return fail("qmp_capabilities", err)
		}
		n++
		var msg qmpMessage
		if err := json.Unmarshal(line, &msg); err != nil {
			return fail("qmp_capabilities", fmt.Errorf("reply is not JSON: %s", quoteShort(line)))
		}
		if msg.Event != "" {
			onEvent(qmpEvent{Event: msg.Event, Data: msg.Data})
			continue
		}
		if msg.Error != nil {
			return fail("qmp_capabilities", fmt.Errorf("refused: %s: %s", msg.Error.Class, msg.Error.Desc))
		}
		if msg.Return == nil {
			return fail("qmp_capabilities", fmt.Errorf("unexpected reply %s", quoteShort(line)))
		}
		break
	}
	if !stop() {
		// ctx ended just now and may have set the past deadline.
		conn.Close()
		return nil, fmt.Errorf("QMP handshake: %w", ctx.Err())
	}
	conn.SetDeadline(time.Time{})
	go q.read(br, n)
	return q, nil
}

// readQMPLine returns the next non-empty line without its line ending.
func readQMPLine(br *bufio.Reader) ([]byte, error) {
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, fmt.Errorf("message longer than %d bytes", qmpMaxLine)
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				if len(bytes.TrimSpace(line)) > 0 {
					return nil, fmt.Errorf("connection closed in the middle of %s", quoteShort(line))
				}
				return nil, errors.New("connection closed by the peer")
			}
			return nil, err
		}
		if line = bytes.TrimSpace(line); len(line) > 0 {
			return line, nil
		}
	}
}

// read handles messages after the first n until the stream ends.
func (q *qmpClient) read(br *bufio.Reader, n int) {
	for {
		n++
		line, err := readQMPLine(br)
		if err != nil {
			q.stop(fmt.Errorf("QMP stream: %w", err))
			return
		}
		var msg qmpMessage
		if err := json.Unmarshal(line, &msg); err != nil {
			q.stop(fmt.Errorf("QMP stream broken: message %d is not a JSON object: %s", n, quoteShort(line)))
			return
		}
		switch {
		case msg.Event != "":
			q.onEvent(qmpEvent{Event: msg.Event, Data: msg.Data})
		case msg.ID != nil:
			q.mu.Lock()
			ch := q.pending[*msg.ID]
			delete(q.pending, *msg.ID)
			q.mu.Unlock()
			if ch == nil {
				continue // the answer to a command that gave up waiting
			}
			if msg.Error != nil {
				ch <- qmpReply{err: fmt.Errorf("%s: %s", msg.Error.Class, msg.Error.Desc)}
			} else {
				ch <- qmpReply{ret: msg.Return}
			}
		default:
			q.stop(fmt.Errorf("QMP stream broken: message %d is neither an event nor a reply: %s", n, quoteShort(line)))
			return
		}
	}
}

// stop records why the stream ended, fails every waiting command with it
// and closes the connection.
func (q *qmpClient) stop(err error) {
	q.mu.Lock()
	q.err = err
	for id, ch := range q.pending {
		ch <- qmpReply{err: err}
		delete(q.pending, id)
	}
	q.mu.Unlock()
	q.conn.Close()
	close(q.done)
}

// run sends a command and waits for its reply until ctx ends.
func (q *qmpClient) run(ctx context.Context, command string, args any) (json.RawMessage, error) {
	q.mu.Lock()
	if q.err != nil {
		q.mu.Unlock()
		return nil, fmt.Errorf("QMP %s: %w", command, q.err)
	}
	id := q.nextID
	q.nextID++
	ch := make(chan qmpReply, 1)
	q.pending[id] = ch
	q.mu.Unlock()
	forget := func() {
		q.mu.Lock()
		delete(q.pending, id)
		q.mu.Unlock()
	}
	if err := q.send(ctx, command, args, id); err != nil {
		forget()
		return nil, err
	}
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, fmt.Errorf("QMP %s: %w", command, r.err)
		}
		return r.ret, nil
	case <-ctx.Done():
		forget()
		return nil, fmt.Errorf("QMP %s: no answer: %w", command, ctx.Err())
	}
}

// fire sends a command and does not wait for its reply (quit: the reply
// races with QEMU's exit). The reply, if any, has an id nobody waits for
// and is dropped.
func (q *qmpClient) fire(command string) error {
	q.mu.Lock()
	id := q.nextID
	q.nextID++
	q.mu.Unlock()
	return q.send(context.Background(), command, nil, id)
}

// send writes one command with its id.
func (q *qmpClient) send(ctx context.Context, command string, args any, id uint64) error {
	msg, err := json.Marshal(struct {
		Execute   string `json:"execute"`
		Arguments any    `json:"arguments,omitempty"`
		ID        uint64 `json:"id"`
	}{command, args, id})
	if err != nil {
		return fmt.Errorf("QMP %s: %w", command, err)
	}
	// A peer that does not read must not block us: bound the write.
	q.wmu.Lock()
	defer q.wmu.Unlock()
	q.conn.SetWriteDeadline(earlier(ctx, time.Now().Add(5*time.Second)))
	if _, err := q.conn.Write(append(msg, '\n')); err != nil {
		// A peer that hung up: its EOF, if the reader sees it at once,
		// says more than a broken pipe.
		select {
		case <-q.done:
			err = q.err
		case <-time.After(100 * time.Millisecond):
		}
		return fmt.Errorf("QMP %s: %w", command, err)
	}
	return nil
}

// close ends the connection and waits for the reader.
func (q *qmpClient) close() {
	q.conn.Close()
	<-q.done
}

// quoteShort quotes a peer's message for an error, cut to a readable size.
func quoteShort(b []byte) string {
	if len(b) > 120 {
		return strconv.Quote(string(b[:117])) + "..."
	}
	return strconv.Quote(string(b))
}
