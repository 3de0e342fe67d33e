package harness

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"patchbay/images"
	"patchbay/kernel"
	"patchbay/record"
	"patchbay/triage"
	"patchbay/vm"
)

// How a run's VM started (RunRecord.Start).
const (
	StartCold     = "cold"     // booted from scratch
	StartSnapshot = "snapshot" // booted cold, then saved the kernel's snapshot and went on
	StartRestore  = "restore"  // restored from the kernel's snapshot
	// StartSnapshotSkipped: booted cold to save a snapshot, but the boot
	// printed a finding (or lockdep reported), so it was not saved.
	StartSnapshotSkipped = "cold-unsaved"
)

// snapshotFormat changes when what a snapshot holds changes (the guest
// preparation below, the QEMU arguments), so old ones are not restored.
const snapshotFormat = "2"

// Snapshots is the cache of saved VM states, one per kernel + image + guest
// binary + VM shape, under <cache>/snapshots/<key>/: root.qcow2 (the root
// overlay frozen with the state), state (QEMU's migration stream),
// console.log (the boot) and meta.json (written last: the snapshot is
// complete). Each run restores one with a fresh root overlay and a fresh
// scratch disk, so every run starts from the same kernel state, lockdep's
// never-reported state included.
type Snapshots struct {
	Dir string
	// Disabled makes every run boot cold (patchbay run --cold).
	Disabled bool

	mu   sync.Mutex
	said map[string]bool   // messages already printed
	bad  map[string]string // key -> why making or restoring it failed this session
	qemu string            // qemu-system-x86_64 --version, part of every key
}

// NewSnapshots keeps snapshots under cacheDir/snapshots; with cold, runs
// neither make nor restore them.
func NewSnapshots(cacheDir string, cold bool) *Snapshots {
	return &Snapshots{Dir: filepath.Join(cacheDir, "snapshots"), Disabled: cold}
}

// snapshot is a complete saved state.
type snapshot struct {
	Key   string `json:"key"`
	Dir   string `json:"-"`
	Root  string `json:"-"`
	State string `json:"-"`

	Kernel    string    `json:"kernel_key"`
	Image     string    `json:"image_key"`
	Guest     string    `json:"guest_sha256"`
	QEMU      string    `json:"qemu"`
	Shape     string    `json:"shape"`
	Made      time.Time `json:"made"`
	BootSecs  float64   `json:"boot_seconds"`
	SaveSecs  float64   `json:"save_seconds"`
	StateSize int64     `json:"state_bytes"`
}

// maker is held by the one run that boots cold and saves a snapshot.
type maker struct {
	s      *Snapshots
	snap   snapshot
	tmp    string // becomes snap.Dir on commit
	unlock func()
}

func (s *Snapshots) once(logf func(string, ...any), format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	s.mu.Lock()
	if s.said == nil {
		s.said = map[string]bool{}
	}
	seen := s.said[msg]
	s.said[msg] = true
	s.mu.Unlock()
	if !seen && logf != nil {
		logf("%s", msg)
	}
}

func (s *Snapshots) markBad(key, why string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.bad == nil {
		s.bad = map[string]string{}
	}
	s.bad[key] = why
}

func (s *Snapshots) qemuVersion() (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.qemu != "" {
		return s.qemu, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "qemu-system-x86_64", "--version").Output()
	if err != nil {
		return "", fmt.Errorf("%w: qemu-system-x86_64 --version: %v", vm.ErrNoSnapshot, err)
	}
	if _, err := exec.LookPath("qemu-img"); err != nil {
		return "", fmt.Errorf("%w: qemu-img not found: %v", vm.ErrNoSnapshot, err)
	}
	first, _, _ := strings.Cut(string(out), "\n")
	s.qemu = strings.TrimSpace(first)
	return s.qemu, nil
}

// key names a snapshot by everything that decides the saved state: change
// any of these and the old snapshot is not used.
func (s *Snapshots) key(c *Case, k *kernel.Artifact, img *images.Image, guestBin, accel string) (snapshot, error) {
	qemu, err := s.qemuVersion()
	if err != nil {
		return snapshot{}, err
	}
	guest, err := fileSHA256(guestBin)
	if err != nil {
		return snapshot{}, fmt.Errorf("guest binary %s: %w", guestBin, err)
	}
	snap := snapshot{
		Kernel: k.Key, Image: img.Key, Guest: guest, QEMU: qemu,
		Shape: fmt.Sprintf("cmdline=%q mem=%d cpus=%d scratch=%d accel=%s",
			c.Kernel.Cmdline, c.VM.MemoryMB, c.VM.CPUs, c.VM.ScratchMB, accel),
	}
	h := sha256.Sum256([]byte(strings.Join([]string{snapshotFormat, snap.Kernel, snap.Image, snap.Guest, snap.QEMU, snap.Shape}, "\x00")))
	snap.Key = hex.EncodeToString(h[:])[:24]
	return snap, nil
}

// get returns the complete snapshot for want, or a maker when this run is
// to make it, or neither with the reason this run boots cold.
func (s *Snapshots) get(want snapshot, img *images.Image) (*snapshot, *maker, string) {
	if !filepath.IsAbs(s.Dir) {
		return nil, nil, fmt.Sprintf("snapshot directory %q is not absolute", s.Dir)
	}
	dir := filepath.Join(s.Dir, want.Key)
	if data, err := os.ReadFile(filepath.Join(dir, "meta.json")); err == nil {
		var snap snapshot
		if err := json.Unmarshal(data, &snap); err == nil && snap.Key == want.Key {
			snap.Dir, snap.Root, snap.State = dir, filepath.Join(dir, "root.qcow2"), filepath.Join(dir, "state")
			s.mu.Lock()
			why, bad := s.bad[want.Key]
			s.mu.Unlock()
			if bad {
				return nil, nil, why
			}
			now := time.Now()
			os.Chtimes(filepath.Join(dir, "meta.json"), now, now) // last used, for pruning
			return &snap, nil, ""
		}
	}
	s.mu.Lock()
	why, bad := s.bad[want.Key]
	s.mu.Unlock()
	if bad {
		return nil, nil, why
	}
	unlock, ok, err := tryFlock(filepath.Join(s.Dir, want.Key+".lock"))
	if err != nil {
		return nil, nil, err.Error()
	}
	if !ok {
		return nil, nil, "another run is saving this kernel's snapshot"
	}
	// Another process may have finished it between our look and the lock.
	if _, err := os.Stat(filepath.Join(dir, "meta.json")); err == nil {
		unlock()
		return s.get(want, img)
	}
	tmp := dir + ".tmp"
	os.RemoveAll(tmp) // a crashed maker's leftovers: we hold the lock
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		unlock()
		return nil, nil, "snapshot directory: " + err.Error()
	}
	m := &maker{s: s, snap: want, tmp: tmp, unlock: unlock}
	m.snap.Dir, m.snap.Root, m.snap.State = dir, filepath.Join(tmp, "root.qcow2"), filepath.Join(tmp, "state")
	if err := vm.CreateOverlay(context.Background(), img.Root, "raw", m.snap.Root); err != nil {
		m.abort(err.Error())
		return nil, nil, err.Error()
	}
	return nil, m, ""
}

// commit publishes the snapshot: state and overlay become read-only and
// meta.json marks it complete.
func (m *maker) commit(console []byte) error {
	defer m.unlock()
	fail := func(err error) error {
		os.RemoveAll(m.tmp)
		m.s.markBad(m.snap.Key, "saving the snapshot failed: "+err.Error())
		return err
	}
	fi, err := os.Stat(m.snap.State)
	if err != nil {
		return fail(err)
	}
	m.snap.StateSize = fi.Size()
	m.snap.Made = time.Now().UTC()
	for _, p := range []string{m.snap.State, m.snap.Root} {
		if err := os.Chmod(p, 0o444); err != nil {
			return fail(err)
		}
	}
	if err := writeFileAtomic(filepath.Join(m.tmp, "console.log"), console); err != nil {
		return fail(err)
	}
	if err := writeJSON(filepath.Join(m.tmp, "meta.json"), m.snap); err != nil {
		return fail(err)
	}
	os.RemoveAll(m.snap.Dir)
	if err := os.Rename(m.tmp, m.snap.Dir); err != nil {
		return fail(err)
	}
	return nil
}

// abort drops a half-made snapshot; this session boots this key cold.
func (m *maker) abort(why string) {
	os.RemoveAll(m.tmp)
	m.s.markBad(m.snap.Key, "no snapshot: "+why)
	m.unlock()
}

func tryFlock(path string) (unlock func(), ok bool, err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, false, fmt.Errorf("snapshot lock %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, false, fmt.Errorf("snapshot lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("snapshot lock %s: %w", path, err)
	}
	return func() { f.Close() }, true, nil
}

// startVM starts the run's QEMU: restored from the kernel's snapshot (ready,
// rec.Start = restore), or cold. A cold boot returns a maker when this run is
// the one to save the snapshot (saveSnapshot, once the guest is up). Every
// reason to boot cold is said once per session.
func (r *Runner) startVM(ctx context.Context, rec *record.RunRecord, cfg vm.Config, k *kernel.Artifact, scratchDir string) (*vm.Machine, *maker, error) {
	rec.Start = StartCold
	s := r.Snapshots
	if s == nil || s.Disabled {
		m, err := vm.Start(ctx, cfg)
		return m, nil, err
	}
	if len(cfg.Disks) != 1 {
		// A snapshot holds the devices it was saved with: one scratch disk.
		// A power-cut run has a second one (the ack disk).
		s.once(r.logf, "snapshots: runs with %d disks boot cold (a snapshot has one scratch disk)", len(cfg.Disks))
		m, err := vm.Start(ctx, cfg)
		return m, nil, err
	}
	want, err := s.key(r.Case, k, r.Image, r.GuestBin, r.Accel)
	if err != nil {
		s.once(r.logf, "snapshots: %v: booting cold", err)
		m, err := vm.Start(ctx, cfg)
		return m, nil, err
	}
	snap, mk, why := s.get(want, r.Image)
	if snap != nil {
		m, err := r.restore(ctx, cfg, snap, scratchDir, nil)
		if err == nil {
			rec.Start, rec.Snapshot = StartRestore, snap.Key
			return m, nil, nil
		}
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		s.markBad(snap.Key, "restoring it failed: "+err.Error())
		why = "restoring it failed: " + err.Error()
	}
	if why != "" {
		s.once(r.logf, "snapshot %s (kernel %s): %s: booting cold", want.Key, k.Release, why)
	}
	if mk != nil {
		cfg.RootOverlay = mk.snap.Root
	}
	m, err := vm.Start(ctx, cfg)
	if err != nil && mk != nil {
		mk.abort(err.Error())
		mk = nil
	}
	return m, mk, err
}

// restore starts QEMU from snap with a fresh root overlay over the frozen one
// (the scratch disk in cfg is fresh already), resumes it and logs in.
// With steps, it records when each step ended (see RestoreSteps).
func (r *Runner) restore(ctx context.Context, cfg vm.Config, snap *snapshot, scratchDir string, steps *RestoreSteps) (*vm.Machine, error) {
	start := time.Now()
	done := func(d *time.Duration) {
		if steps != nil {
			*d = time.Since(start)
		}
	}
	if steps == nil {
		steps = &RestoreSteps{}
	}
	top := filepath.Join(scratchDir, "root.qcow2")
	if err := vm.CreateOverlay(ctx, snap.Root, "qcow2", top); err != nil {
		return nil, err
	}
	done(&steps.Overlay)
	cfg.RootOverlay, cfg.Incoming = top, snap.State
	m, err := vm.Start(ctx, cfg)
	if err != nil {
		return nil, err
	}
	done(&steps.QMP)
	if err := m.Resume(ctx); err != nil {
		m.Close()
		return nil, err
	}
	done(&steps.Running)
	// The guest was up when it was saved: sshd answers at once or never.
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := m.Reconnect(rctx); err != nil {
		m.Close()
		return nil, err
	}
	done(&steps.SSH)
	return m, nil
}

// RestoreSteps is when each step of a restore ended, from its start: the
// root overlay made (qemu-img), QEMU up with QMP answering, the state
// loaded and the guest running, the first SSH login.
type RestoreSteps struct {
	Overlay, QMP, Running, SSH time.Duration
}

// snapshotPrep readies the guest for saving: the run's directories exist, the
// disks are synced, and lockdep has not reported (debug_locks still 1), so a
// restored run gets lockdep's one report per boot for itself.
const snapshotPrep = "mkdir -p " + mountPoint + " " + guestTmp + " && sync && " +
	"if [ -r /proc/lockdep_stats ]; then grep -h debug_locks: /proc/lockdep_stats; fi"

// saveSnapshot makes the kernel's snapshot from this freshly booted guest
// (pbguest uploaded, directories made, no finding on the console, no SSH
// connection open), then lets this run go on from the same state. A snapshot
// that cannot be made only costs later runs their shortcut; an error is
// returned only when the guest itself went away.
func (r *Runner) saveSnapshot(ctx context.Context, g *guest, mk *maker, rec *record.RunRecord, scratchDir string) error {
	m := g.m
	if err := r.upload(ctx, g); err != nil {
		mk.abort("uploading pbguest: " + err.Error())
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, time.Minute)
	out, err := m.Output(pctx, snapshotPrep)
	cancel()
	if err != nil {
		mk.abort("preparing the guest: " + err.Error())
		return err
	}
	if f := triage.Parse(m.Console()); len(f) > 0 {
		mk.abort(fmt.Sprintf("the boot printed %q", f[0].Title))
		r.Snapshots.once(r.logf, "snapshot %s: the boot printed %q: every run of this kernel boots cold", mk.snap.Key, f[0].Title)
		rec.Start = StartSnapshotSkipped
		return nil
	}
	if strings.Contains(string(out), "debug_locks:") && !strings.Contains(strings.Join(strings.Fields(string(out)), " "), "debug_locks: 1") {
		mk.abort("lockdep is off after boot: " + strings.TrimSpace(string(out)))
		r.Snapshots.once(r.logf, "snapshot %s: lockdep already reported during boot: every run of this kernel boots cold", mk.snap.Key)
		rec.Start = StartSnapshotSkipped
		return nil
	}
	start := time.Now()
	if err := m.Freeze(ctx, mk.snap.State, filepath.Join(scratchDir, "root-top.qcow2")); err != nil {
		mk.abort(err.Error())
		r.Snapshots.once(r.logf, "snapshot %s: %v: runs of this kernel boot cold", mk.snap.Key, err)
		if cerr := m.Continue(ctx); cerr != nil {
			return cerr
		}
	} else {
		if err := m.Continue(ctx); err != nil {
			mk.abort(err.Error())
			return err
		}
		mk.snap.BootSecs, mk.snap.SaveSecs = rec.BootSecs, time.Since(start).Seconds()
		if err := mk.commit(m.Console()); err != nil {
			r.Snapshots.once(r.logf, "snapshot %s: %v: runs of this kernel boot cold", mk.snap.Key, err)
		} else {
			rec.Start, rec.Snapshot = StartSnapshot, mk.snap.Key
			r.logf("%s #%d: saved snapshot %s in %.1fs (%d MB): later runs of this kernel restore it",
				rec.Variant, rec.Index, mk.snap.Key, mk.snap.SaveSecs, mk.snap.StateSize>>20)
		}
	}
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	return m.Reconnect(rctx)
}

// refreshStep gives a guest that was saved and resumed what a fresh boot
// would have: the host's clock (the guest's stopped while it was saved) and
// a fresh random seed. It asks for the clock on stdout and reads it from
// stdin, which the batch answers (see clockAnswer). The kernel config has no
// VMGENID, so host entropy is credited with RNDADDENTROPY and the CRNG
// reseeded with RNDRESEEDCRNG at once (a plain write to /dev/urandom is
// mixed in but not used before the next periodic reseed, up to a minute
// later, so two restores would read the same bytes). perl is in every
// Debian minbase; the command holds only digits and hex.
func refreshStep() (step, error) {
	seed := make([]byte, 64)
	if _, err := rand.Read(seed); err != nil {
		return step{}, fmt.Errorf("host entropy: %w", err)
	}
	return step{"refreshing the restored guest's clock and random seed", fmt.Sprintf("echo clock? && read t && date -s \"@$t\" >/dev/null && perl -e '"+
		"open(my $f, \"<\", \"/dev/urandom\") or die \"urandom: $!\"; my $d = pack(\"H*\", \"%s\"); "+
		"ioctl($f, 0x40085203, pack(\"ii\", 8 * length($d), length($d)) . $d) or die \"RNDADDENTROPY: $!\"; "+
		"ioctl($f, 0x5207, 0) or die \"RNDRESEEDCRNG: $!\"'", hex.EncodeToString(seed))}, nil
}

// refreshGuest refreshes a restored guest in a session of its own (see
// refreshStep).
func refreshGuest(ctx context.Context, m *vm.Machine) error {
	g := &guest{m: m}
	st, err := refreshStep()
	if err != nil {
		return err
	}
	g.pending = []step{st}
	return g.flush(ctx)
}
