package harness

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"patchbay/casespec"
	"patchbay/kernel"
	"patchbay/record"
	"patchbay/vm"
	"patchbay/workload/iomapcheck"
)

// TestIomapCheckOnStock runs the stock case with the buffered-iomap check on:
// stock 6.12 ext4 has no buffered iomap path, so the run must fail in setup
// saying so, after counting real tracepoints on a real kernel.
func TestIomapCheckOnStock(t *testing.T) {
	e := newFaultEnv(t)
	e.c.Filesystem.CheckBufferedIomap = true
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	rec, err := e.runner(t).RunOne(ctx, "eopnotsupp", 0, 1, e.k)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("outcome %s: %v", rec.Outcome, rec.Reasons)
	if rec.Outcome != record.Fail || len(rec.Reasons) != 1 || !strings.HasPrefix(rec.Reasons[0], "setup: buffered iomap not in use") {
		t.Fatalf("outcome %s %v: want fail with the setup reason 'buffered iomap not in use'", rec.Outcome, rec.Reasons)
	}
	a := rec.BufferedIomap
	if a == nil || a.Setup != 0 || a.Dev == "" || len(a.Enabled) != len(iomapcheck.BufferedIomapEvents) || len(a.Missing) != 0 {
		t.Errorf("activity %+v: want every buffered event enabled on 6.12 and none fired", a)
	}
	if rec.Writes() != 0 {
		t.Errorf("the workload ran (%d writes) after setup failed", rec.Writes())
	}
}

// TestIomapTracerCounts is the check's positive control, on the same stock
// kernel: the tracer counts iomap's direct-I/O events on the scratch file
// system, ignores the same I/O on the root disk (the device filter), and
// counts no buffered-iomap events for buffered writes and fsync.
func TestIomapTracerCounts(t *testing.T) {
	e := newFaultEnv(t)
	e.c.Workload.Duration = casespec.Duration(2 * time.Second)
	r := e.runner(t)
	type step struct {
		name  string
		t     iomapcheck.Counter
		io    string
		check func(n int64) bool
		want  string
		got   int64
		err   error
	}
	dio := iomapcheck.IomapCounter(mountPoint, []string{"iomap_dio_rw_begin", "iomap_dio_complete"})
	buffered := iomapcheck.IomapCounter(mountPoint, iomapcheck.BufferedIomapEvents)
	folios, large := iomapcheck.FolioCounters(mountPoint)
	steps := []*step{
		{name: "direct I/O on the scratch fs", t: dio,
			io:    "dd if=/dev/zero of=" + workDir + "/dio bs=4096 count=16 oflag=direct status=none",
			check: func(n int64) bool { return n >= 32 }, want: ">= 32 (16 writes, begin + complete)"},
		{name: "direct I/O on the root fs", t: dio,
			io:    "dd if=/dev/zero of=/root/dio bs=4096 count=16 oflag=direct status=none; rm -f /root/dio",
			check: func(n int64) bool { return n == 0 }, want: "0 (another device)"},
		{name: "buffered I/O and fsync on the scratch fs", t: buffered,
			io:    "dd if=/dev/urandom of=" + workDir + "/buf bs=4096 count=64 conv=fsync status=none && cat " + workDir + "/buf > /dev/null",
			check: func(n int64) bool { return n == 0 }, want: "0 (stock ext4 buffered I/O uses buffer heads)"},
		{name: "page-cache folios added by a buffered write on the scratch fs", t: folios,
			io:    "dd if=/dev/urandom of=" + workDir + "/fol bs=4096 count=64 conv=fsync status=none",
			check: func(n int64) bool { return n >= 64 }, want: ">= 64 (64 new pages)"},
		{name: "folios above order 0 on the scratch fs", t: large,
			io:    "dd if=/dev/urandom of=" + workDir + "/fol2 bs=65536 count=16 conv=fsync status=none && echo 3 > /proc/sys/vm/drop_caches && cat " + workDir + "/fol2 > /dev/null",
			check: func(n int64) bool { return n == 0 }, want: "0 (stock 6.12 ext4 has no large folios)"},
	}
	whole := &record.RunRecord{}
	var wholeErr error
	r.BeforePhase = func(ctx context.Context, phase string, m *vm.Machine) error {
		if phase != "workload" {
			return nil
		}
		for _, s := range steps {
			out, err := m.Output(ctx, s.t.StartScript()+"\n"+s.io+"\n"+s.t.StopScript())
			if err != nil {
				s.err = err
				continue
			}
			var c iomapcheck.Counts
			c, s.err = iomapcheck.ParseCounts(out)
			s.got = c.Total
			if s.err == nil {
				var a record.IomapActivity
				s.err = iomapcheck.ParseStart(out, &a)
			}
		}
		// The run's own sequence: start after mount, count at the end of
		// setup, stop after the workload.
		g := &guest{m: m, dir: t.TempDir()}
		trace := iomapcheck.New(mountPoint)
		if reason, err := trace.Start(ctx, g, whole); err != nil || reason != "" {
			wholeErr = fmt.Errorf("start: %q %v", reason, err)
			return nil
		}
		if _, err := g.sh(ctx, time.Minute, "", "dd if=/dev/urandom of="+workDir+"/seq bs=4096 count=32 conv=fsync status=none"); err != nil {
			wholeErr = err
			return nil
		}
		reason, err := trace.SetupDone(ctx, g, whole, "defaults", true)
		if err == nil && reason == "" {
			err = fmt.Errorf("setupDone found buffered iomap in use on stock ext4")
		}
		if err == nil {
			err = trace.Stop(ctx, g, whole)
		}
		wholeErr = err
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	rec, err := r.RunOne(ctx, "eopnotsupp", 0, 1, e.k)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Outcome != record.Pass {
		t.Errorf("run outcome %s %v", rec.Outcome, rec.Reasons)
	}
	if a := whole.BufferedIomap; wholeErr != nil || a == nil || a.Setup != 0 || a.Folios < 32 || a.LargeFolios != 0 || !a.OnlyOrderZero() {
		t.Errorf("start/setupDone/stop: %v, activity %+v: want 0 iomap events, >= 32 folios, none above order 0", wholeErr, a)
	} else {
		t.Logf("start/setupDone/stop: %s", a.Summary())
	}
	for _, s := range steps {
		switch {
		case s.err != nil:
			t.Errorf("%s: %v", s.name, s.err)
		case !s.check(s.got):
			t.Errorf("%s: %d events, want %s", s.name, s.got, s.want)
		default:
			t.Logf("%s: %d events", s.name, s.got)
		}
	}
}

// TestIomapPatchesBuild applies and compiles the patches patchbay wrote for
// the buffered-iomap series on stock 6.12 plus a stub declaring the series'
// inode state: without the series, the most that can be checked here.
func TestIomapPatchesBuild(t *testing.T) {
	if os.Getenv("PATCHBAY_E2E") == "" {
		t.Skip("set PATCHBAY_E2E=1 (make test does): builds kernels")
	}
	c, err := LoadCase("testdata/iomap-stub")
	if err != nil {
		t.Fatal(err)
	}
	specs, err := c.KernelSpecs(nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	b := &kernel.Builder{CacheDir: DefaultCacheDir(), Progress: testWriter{t}}
	for _, s := range specs {
		k, err := b.Build(ctx, s)
		if err != nil {
			t.Fatalf("%s: %v", s.Name, err)
		}
		if st, err := os.Stat(k.BzImage); err != nil || st.Size() == 0 {
			t.Errorf("%s: no bzImage: %v", s.Name, err)
		}
	}
}
