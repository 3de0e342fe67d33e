// Package vm runs one kernel in one QEMU: start, console capture, QMP
// events, SSH readiness, commands, uploads, and a Close that always reaps.
package vm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/digitalocean/go-qemu/qmp"
	"golang.org/x/crypto/ssh"
)

// Errors that tell the harness which outcome class a failure belongs to.
var (
	// ErrInfra: the host failed (QEMU missing or refused to start, no port).
	ErrInfra = errors.New("infrastructure error")
	// ErrBoot: QEMU ran but the guest never answered SSH before the deadline.
	ErrBoot = errors.New("boot error")
	// ErrExited: QEMU exited (guest reboot/panic with -no-reboot, or killed).
	ErrExited = errors.New("qemu exited")
	// ErrPanicked: the guest kernel panicked (pvpanic); QEMU is paused.
	ErrPanicked = errors.New("guest panicked")
)

// Config describes one virtual machine.
type Config struct {
	QEMU      string // binary; default qemu-system-x86_64
	Kernel    string // bzImage; "" boots the firmware only (tests)
	Cmdline   string // appended to the harness's own kernel parameters
	RootImage string // ext4 image; attached snapshot=on so it is never written
	// RootOverlay, when set, replaces RootImage: a qcow2 overlay (over the
	// image) attached writable as drive "root", so its state can be frozen
	// with a saved VM state (see snapshot.go).
	RootOverlay string
	// Incoming, when set, starts QEMU paused, loading the VM state saved in
	// this file (Machine.Freeze); call Resume instead of booting.
	Incoming string
	Disks    []string // raw scratch disks: /dev/vdb, /dev/vdc, ...
	MemoryMB int
	CPUs     int
	Accel    string // "kvm" or "tcg"
	WorkDir  string // console.log and qemu.log go here
	// ConsoleLimit caps console.log (and the copy kept for triage);
	// 0 = 32 MiB. Past it the output is counted, dropped, and marked.
	ConsoleLimit int
	Paused       bool // start with the CPUs stopped (-S)
	Signer       ssh.Signer
	HostKey      ssh.PublicKey // pinned: no InsecureIgnoreHostKey
}

// Machine is a running QEMU.
type Machine struct {
	cfg     Config
	cmd     *exec.Cmd
	port    int
	sockDir string
	mon     *qmp.SocketMonitor
	console *consoleLog
	// qmpTimeout bounds each QMP command: a stopped or wedged QEMU never
	// answers.
	qmpTimeout time.Duration
	qmpDone    chan struct{} // closed when go-qemu's event channel closes

	exited  chan struct{}
	waitErr error
	halted  chan struct{} // closed on GUEST_PANICKED: the guest will not answer again

	mu         sync.Mutex
	events     []string
	panicked   bool
	ioError    bool
	guestReset bool
	shutdown   string // SHUTDOWN's reason
	qmpUp      bool   // the handshake is done: qmpDone will close
	qmpSeq     uint64 // the last command id
	qmpBroken  error  // why no command may be sent any more
	client     *ssh.Client
	closed     bool
}

func newMachine(cfg Config) *Machine {
	return &Machine{cfg: cfg, qmpTimeout: 5 * time.Second, qmpDone: make(chan struct{}), exited: make(chan struct{}), halted: make(chan struct{})}
}

// baseCmdline is what every guest needs: serial console, the image's root and
// init, no slow ACPI PCI routing under TCG, no reboot loop on panic, and
// unthrottled /dev/kmsg so phase markers from the harness are never dropped.
const baseCmdline = "console=ttyS0,115200 root=/dev/vda rw rootfstype=ext4 init=/sbin/patchbay-init " +
	"pci=noacpi panic=-1 printk.devkmsg=on net.ifnames=0"

// Start launches QEMU and connects to its QMP socket. It does not wait for
// the guest: call WaitReady.
func Start(ctx context.Context, cfg Config) (*Machine, error) {
	if cfg.QEMU == "" {
		cfg.QEMU = "qemu-system-x86_64"
	}
	if _, err := exec.LookPath(cfg.QEMU); err != nil {
		return nil, fmt.Errorf("%w: %s not found (run ci/setup.sh): %v", ErrInfra, cfg.QEMU, err)
	}
	if err := os.MkdirAll(cfg.WorkDir, 0o755); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInfra, err)
	}
	if err := checkSnapshotPaths(cfg); err != nil {
		return nil, err
	}
	var lastErr error
	for attempt := 0; attempt < 4; attempt++ {
		m, err := start(ctx, cfg)
		if err == nil {
			return m, nil
		}
		lastErr = err
		// Another process can take the port between our probe and QEMU's bind.
		if !strings.Contains(err.Error(), "host forwarding") {
			break
		}
	}
	return nil, lastErr
}

func start(ctx context.Context, cfg Config) (*Machine, error) {
	port, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("%w: no free port: %v", ErrInfra, err)
	}
	// A unix socket path must stay under 108 bytes: use a short temp dir.
	sockDir, err := os.MkdirTemp("", "pbvm")
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInfra, err)
	}
	sock := filepath.Join(sockDir, "qmp.sock")
	args := qemuArgs(cfg, port, sock)
	cmd := exec.Command(cfg.QEMU, args...)
	// Own process group so Close can kill QEMU and anything it spawned;
	// Pdeathsig so QEMU dies with us even if we are killed with SIGKILL.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	qlog, err := os.Create(filepath.Join(cfg.WorkDir, "qemu.log"))
	if err != nil {
		os.RemoveAll(sockDir)
		return nil, fmt.Errorf("%w: %v", ErrInfra, err)
	}
	fmt.Fprintf(qlog, "%s %s\n", cfg.QEMU, strings.Join(args, " "))
	stderr := &bytes.Buffer{}
	cmd.Stderr = io.MultiWriter(qlog, stderr)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		qlog.Close()
		os.RemoveAll(sockDir)
		return nil, fmt.Errorf("%w: %v", ErrInfra, err)
	}
	console, err := newConsoleLog(filepath.Join(cfg.WorkDir, "console.log"), cfg.ConsoleLimit)
	if err != nil {
		qlog.Close()
		os.RemoveAll(sockDir)
		return nil, fmt.Errorf("%w: %v", ErrInfra, err)
	}
	if err := cmd.Start(); err != nil {
		qlog.Close()
		console.close()
		os.RemoveAll(sockDir)
		return nil, fmt.Errorf("%w: starting %s: %v", ErrInfra, cfg.QEMU, err)
	}
	m := newMachine(cfg)
	m.cmd, m.port, m.sockDir, m.console = cmd, port, sockDir, console
	copied := make(chan struct{})
	go func() {
		console.copyFrom(stdout)
		close(copied)
	}()
	go func() {
		err := cmd.Wait()
		<-copied
		qlog.Close()
		// QEMU's last events (SHUTDOWN and its reason) are on their way:
		// record them before saying it exited.
		m.mu.Lock()
		up := m.qmpUp
		m.mu.Unlock()
		if up {
			select {
			case <-m.qmpDone:
			case <-time.After(2 * time.Second):
			}
		}
		m.waitErr = err
		close(m.exited)
	}()
	if err := m.connectQMP(ctx, sock); err != nil {
		m.Close()
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return nil, fmt.Errorf("%w: qemu: %s (%w)", ErrInfra, msg, err)
		}
		return nil, fmt.Errorf("%w: %w", ErrInfra, err)
	}
	return m, nil
}

func qemuArgs(cfg Config, port int, sock string) []string {
	cpu := "qemu64"
	accel := "tcg"
	if cfg.Accel == "kvm" {
		cpu, accel = "host", "kvm"
	}
	args := []string{
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-machine", "pc", "-accel", accel, "-cpu", cpu,
		"-smp", fmt.Sprint(max(cfg.CPUs, 1)), "-m", fmt.Sprint(max(cfg.MemoryMB, 256)),
	}
	if cfg.Kernel != "" {
		args = append(args, "-kernel", cfg.Kernel, "-append", strings.TrimSpace(baseCmdline+" "+cfg.Cmdline))
	}
	if cfg.Paused {
		args = append(args, "-S")
	}
	if cfg.RootOverlay != "" {
		args = append(args, "-drive", "file="+optValue(cfg.RootOverlay)+",if=virtio,format=qcow2,id=root")
	} else {
		args = append(args, "-drive", "file="+optValue(cfg.RootImage)+",if=virtio,format=raw,snapshot=on")
	}
	for _, d := range cfg.Disks {
		// cache=unsafe: flushes are only needed if the host crashes.
		args = append(args, "-drive", "file="+optValue(d)+",if=virtio,format=raw,cache=unsafe")
	}
	args = append(args,
		"-netdev", fmt.Sprintf("user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:%d-:22", port),
		"-device", "virtio-net-pci,netdev=net0",
		"-device", "virtio-rng-pci",
		"-device", "pvpanic",
		// Pause on panic so the console is complete when we look at it.
		"-action", "panic=pause",
		"-chardev", "stdio,id=con,signal=off",
		"-serial", "chardev:con",
		"-qmp", "unix:"+optValue(sock)+",server=on,wait=off",
	)
	if cfg.Incoming != "" {
		args = append(args, incomingArgs(cfg.Incoming)...)
	}
	return args
}

// optValue escapes a value (a path) for QEMU's key=value,... option syntax,
// where a comma ends the value unless doubled.
func optValue(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// Status asks QMP for the run state ("running", "paused", "guest-panicked", ...).
// A QEMU that is stopped (SIGSTOP) or wedged never answers: give up after
// a few seconds and say so.
func (m *Machine) Status() (string, error) {
	raw, err := m.runQMP(context.Background(), "query-status", nil)
	if err != nil {
		select {
		case <-m.exited:
			return "", ErrExited
		default:
		}
		return "", err
	}
	var resp struct {
		Status string `json:"status"`
	}
	if err := json.Unmarshal(raw, &resp); err != nil {
		return "", fmt.Errorf("QMP query-status: %w", err)
	}
	return resp.Status, nil
}

// GuestReset reports whether the guest reset itself (a reboot, a triple
// fault): with -no-reboot that ends QEMU, and QMP's SHUTDOWN says so.
func (m *Machine) GuestReset() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.guestReset
}

// IOError reports whether QEMU failed to read or write a disk image on the
// host (BLOCK_IO_ERROR): the guest is paused, through no fault of its own.
func (m *Machine) IOError() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ioError
}

// Panicked reports whether QEMU saw a guest panic (pvpanic).
func (m *Machine) Panicked() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.panicked
}

// ShutdownReason is the reason of QMP's SHUTDOWN event ("guest-reset",
// "guest-shutdown", "host-qmp-quit", "host-signal", ...), "" before one.
func (m *Machine) ShutdownReason() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.shutdown
}

// Events lists the QMP events seen so far, oldest first.
func (m *Machine) Events() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.events...)
}

// Pid is QEMU's process id (also its process group id).
func (m *Machine) Pid() int { return m.cmd.Process.Pid }

// Port is the 127.0.0.1 port forwarded to the guest's sshd.
func (m *Machine) Port() int { return m.port }

// Halted is closed when the guest panicked (QEMU stays paused).
func (m *Machine) Halted() <-chan struct{} { return m.halted }

// Exited is closed when QEMU has exited.
func (m *Machine) Exited() <-chan struct{} { return m.exited }

// WaitConsole returns when the serial console has printed text.
func (m *Machine) WaitConsole(ctx context.Context, text string) error {
	return m.console.waitFor(ctx, []byte(text), m.exited)
}

// ConsoleError is the first error writing console.log (e.g. disk full):
// evidence was lost, which is the host's fault, not the kernel's.
func (m *Machine) ConsoleError() error { return m.console.writeErr() }

// Console returns everything the serial console printed so far (up to the
// cap, then the truncation marker).
func (m *Machine) Console() []byte { return m.console.bytes() }

// ConsoleDropped is how many bytes of console output were dropped past
// Config.ConsoleLimit (0: console.log is complete).
func (m *Machine) ConsoleDropped() int64 { return m.console.droppedBytes() }

// WaitReady waits until the guest accepts an SSH login, retrying with backoff
// until ctx ends. A failure is ErrBoot unless QEMU itself went away.
func (m *Machine) WaitReady(ctx context.Context) error {
	addr := fmt.Sprintf("127.0.0.1:%d", m.port)
	conf := m.sshConfig()
	// Probe for sshd's banner with short attempts first. QEMU's user-mode
	// network accepts every connection to the forwarded port and only then
	// connects to the guest; a SYN sent before the guest's network is up is
	// retried on SLIRP's own schedule, seconds later. A fresh short attempt
	// every 200 ms gets through as soon as sshd listens.
	const delay = 200 * time.Millisecond
	// QEMU exiting or the guest panicking ends a probe or handshake in
	// flight, not only the wait between them.
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-m.exited:
		case <-m.halted:
		case <-ctx.Done():
		}
		cancel()
	}()
	gone := func() error {
		select {
		case <-m.exited:
			return fmt.Errorf("%w before SSH came up (%v)", ErrExited, m.waitErr)
		case <-m.halted:
			return fmt.Errorf("%w before SSH came up", ErrPanicked)
		default:
			return nil
		}
	}
	var lastErr error
	for {
		err := sshBanner(ctx, addr, time.Second)
		if err == nil {
			var client *ssh.Client
			client, err = dialSSH(ctx, addr, conf)
			if err == nil {
				m.mu.Lock()
				m.client = client
				m.mu.Unlock()
				return nil
			}
		}
		lastErr = err
		select {
		case <-ctx.Done():
			if err := gone(); err != nil {
				return err
			}
			return fmt.Errorf("%w: no SSH login before the deadline: %v (%v)", ErrBoot, lastErr, parent.Err())
		case <-time.After(delay):
		}
	}
}

func (m *Machine) sshConfig() *ssh.ClientConfig {
	return &ssh.ClientConfig{
		User:            "root",
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(m.cfg.Signer)},
		HostKeyCallback: ssh.FixedHostKey(m.cfg.HostKey),
		Timeout:         15 * time.Second,
		// ChaCha20-Poly1305 first: the guest CPU under TCG has no AES-NI,
		// and a just-restored guest translates every code path afresh; its
		// first login took 0.34-0.38 s with ChaCha20 against 0.47-0.55 s
		// with AES-GCM (bench boot, 3 restores each). Same security.
		Config: ssh.Config{Ciphers: []string{"chacha20-poly1305@openssh.com", "aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr", "aes256-ctr"}},
	}
}

// sshBanner connects and waits up to timeout for the server's "SSH-"
// identification line.
func sshBanner(ctx context.Context, addr string, timeout time.Duration) error {
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(earlier(ctx, time.Now().Add(timeout)))
	defer context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })()
	buf := make([]byte, 4)
	if _, err := io.ReadFull(conn, buf); err != nil {
		return fmt.Errorf("no sshd banner yet: %w", err)
	}
	if string(buf) != "SSH-" {
		return fmt.Errorf("not an sshd banner: %q", buf)
	}
	return nil
}

func dialSSH(ctx context.Context, addr string, conf *ssh.ClientConfig) (*ssh.Client, error) {
	d := net.Dialer{Timeout: conf.Timeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	// The handshake itself must not outlive the deadline or a cancel either.
	conn.SetDeadline(earlier(ctx, time.Now().Add(conf.Timeout)))
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	c, chans, reqs, err := ssh.NewClientConn(conn, addr, conf)
	if !stop() && err == nil {
		c.Close()
		err = ctx.Err()
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	return ssh.NewClient(c, chans, reqs), nil
}

// Run runs a shell command in the guest in its own SSH session. It returns
// when the command ends, ctx ends (the session is closed), or QEMU exits.
func (m *Machine) Run(ctx context.Context, command string, stdin io.Reader, stdout, stderr io.Writer) error {
	m.mu.Lock()
	client := m.client
	m.mu.Unlock()
	if client == nil {
		return errors.New("vm: not connected (WaitReady first)")
	}
	sess, err := client.NewSession()
	if err != nil {
		return fmt.Errorf("ssh session: %w", err)
	}
	defer sess.Close()
	sess.Stdin, sess.Stdout, sess.Stderr = stdin, stdout, stderr
	if err := sess.Start(command); err != nil {
		return fmt.Errorf("ssh start %q: %w", short(command), err)
	}
	done := make(chan error, 1)
	go func() { done <- sess.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("%q: %w", short(command), err)
		}
		return nil
	case <-ctx.Done():
		sess.Signal(ssh.SIGKILL)
		sess.Close()
		return fmt.Errorf("%q: %w", short(command), ctx.Err())
	case <-m.exited:
		sess.Close()
		return fmt.Errorf("%q: %w", short(command), ErrExited)
	case <-m.halted:
		// Paused on panic: the session would otherwise hang until its deadline.
		sess.Close()
		return fmt.Errorf("%q: %w", short(command), ErrPanicked)
	}
}

// Output runs a command and returns its stdout; stderr is in the error.
func (m *Machine) Output(ctx context.Context, command string) ([]byte, error) {
	var out, errb bytes.Buffer
	err := m.Run(ctx, command, nil, &out, &errb)
	if err != nil {
		return out.Bytes(), fmt.Errorf("%w: %s", err, strings.TrimSpace(errb.String()))
	}
	return out.Bytes(), nil
}

// Upload writes data to path in the guest with the given mode.
func (m *Machine) Upload(ctx context.Context, data io.Reader, path string, mode os.FileMode) error {
	cmd := fmt.Sprintf("cat > %s.tmp && chmod %o %s.tmp && mv %s.tmp %s", path, mode, path, path, path)
	var errb bytes.Buffer
	if err := m.Run(ctx, cmd, data, io.Discard, &errb); err != nil {
		return fmt.Errorf("upload %s: %w: %s", path, err, strings.TrimSpace(errb.String()))
	}
	return nil
}

// Close stops QEMU (QMP quit, then SIGKILL to its process group) and waits
// for it. Safe to call more than once.
func (m *Machine) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		<-m.exited
		return nil
	}
	m.closed = true
	client := m.client
	m.mu.Unlock()
	if client != nil {
		client.Close()
	}
	select {
	case <-m.exited:
	default:
		// SIGTERM is QEMU's clean shutdown, as QMP quit is, but needs no
		// monitor (a wedged one included), and QEMU ends at once: after a
		// quit through go-qemu it took 2.0 s more (measured, restored runs).
		grace := 3 * time.Second
		if err := m.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			grace = 0
		}
		select {
		case <-m.exited:
		case <-time.After(grace):
			syscall.Kill(-m.cmd.Process.Pid, syscall.SIGKILL)
			<-m.exited
		}
	}
	m.closeQMP()
	m.console.close()
	os.RemoveAll(m.sockDir)
	return nil
}

// earlier is t or ctx's deadline, whichever comes first.
func earlier(ctx context.Context, t time.Time) time.Time {
	if dl, ok := ctx.Deadline(); ok && dl.Before(t) {
		return dl
	}
	return t
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// short keeps error messages readable: commands can be long.
func short(cmd string) string {
	if len(cmd) > 80 {
		return cmd[:77] + "..."
	}
	return cmd
}
