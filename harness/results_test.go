package harness

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"patchbay/record"
)

// Two sessions of one case started in the same second get two directories.
func TestResultsDirsOfOneSecondDiffer(t *testing.T) {
	parent := filepath.Join(t.TempDir(), "case")
	stamp := time.Now().UTC().Format("20060102-150405")
	const n = 8
	dirs := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dirs[i], errs[i] = newResultsDir(parent, stamp)
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	for i, d := range dirs {
		if errs[i] != nil {
			t.Fatalf("session %d: %v", i, errs[i])
		}
		if seen[d] {
			t.Fatalf("two sessions got %s", d)
		}
		seen[d] = true
		if !strings.HasPrefix(filepath.Base(d), stamp+"-") {
			t.Errorf("%s does not start with the timestamp %s", d, stamp)
		}
		if st, err := os.Stat(d); err != nil || !st.IsDir() {
			t.Errorf("%s not created: %v", d, err)
		}
	}
}

// A name taken already is never reused: os.Mkdir fails on it and another
// suffix is tried.
func TestResultsDirNeverReusesAName(t *testing.T) {
	parent := t.TempDir()
	d1, err := newResultsDir(parent, "20260101-000000")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d1, "console.log"), []byte("first session"), 0o644); err != nil {
		t.Fatal(err)
	}
	for range 50 {
		d, err := newResultsDir(parent, "20260101-000000")
		if err != nil {
			t.Fatal(err)
		}
		if d == d1 {
			t.Fatalf("second session got the first one's directory %s", d)
		}
	}
}

func readSummaryFile(t *testing.T, dir string) *record.Summary {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "summary.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s record.Summary
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatal(err)
	}
	return &s
}

// What a session leaves on disk after each step: the planned jobs as not
// finished, then each record as its run ends. Stopping here is what a
// kill -9 after two runs leaves.
func TestCheckpointLeavesAReadableSummaryAfterEveryRun(t *testing.T) {
	dir := t.TempDir()
	sum := &record.Summary{Case: "c", Baseline: "base", Started: time.Now().UTC(), Dir: dir,
		Variants: []record.VariantSummary{{Name: "base"}, {Name: "fix"}}}
	cp := &checkpoint{sum: sum}
	jobs := []record.Job{{Variant: "base", Index: 0, Seed: 1}, {Variant: "fix", Index: 0, Seed: 1}, {Variant: "base", Index: 1, Seed: 2}, {Variant: "fix", Index: 1, Seed: 2}}
	if err := cp.start(jobs); err != nil {
		t.Fatal(err)
	}
	if got := readSummaryFile(t, dir); len(got.NotFinished) != 4 || got.Case != "c" {
		t.Fatalf("before the first run: not_finished %v, case %q", got.NotFinished, got.Case)
	}
	if err := cp.done(jobs[1], &record.RunRecord{Variant: "fix", Index: 0, Seed: 1, Outcome: record.Crash}); err != nil {
		t.Fatal(err)
	}
	if err := cp.done(jobs[0], &record.RunRecord{Variant: "base", Index: 0, Seed: 1, Outcome: record.Pass}); err != nil {
		t.Fatal(err)
	}
	got := readSummaryFile(t, dir)
	if want := jobs[2:]; fmt.Sprint(got.NotFinished) != fmt.Sprint(want) {
		t.Errorf("not_finished %v, want %v", got.NotFinished, want)
	}
	if len(got.Variants) != 2 || len(got.Variants[0].Runs) != 1 || got.Variants[0].Runs[0].Outcome != record.Pass ||
		len(got.Variants[1].Runs) != 1 || got.Variants[1].Runs[0].Outcome != record.Crash {
		t.Errorf("runs on disk: %+v", got.Variants)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".*.tmp")); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

// Concurrent writers of one file each use their own temporary file: every
// write succeeds and the file holds one writer's whole content.
func TestWriteFileAtomicConcurrentWriters(t *testing.T) {
	path := filepath.Join(t.TempDir(), "summary.json")
	var wg sync.WaitGroup
	errs := make([]error, 16)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = writeFileAtomic(path, []byte(strings.Repeat(fmt.Sprint(i%10), 1<<16)))
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) != 1<<16 || strings.Trim(string(data), string(data[:1])) != "" {
		t.Errorf("file mixes writers or is short: %d bytes", len(data))
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".*")); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

// The verify passes check the same blocks: a block lost once is bad in
// each pass and must be counted once.
func TestBadBlocksIsTheWorstPassNotTheSum(t *testing.T) {
	r := &record.RunRecord{Verify: []record.VerifyResult{{Phase: "live", BadTotal: 468}, {Phase: "dropcache", BadTotal: 468}, {Phase: "remount", BadTotal: 12}}}
	if got := r.BadBlocks(); got != 468 {
		t.Errorf("BadBlocks = %d, want 468 (the worst pass)", got)
	}
}

func TestBuildErrorNamesTheVariantOnce(t *testing.T) {
	err := fmt.Errorf("variant fix: %w", errors.New("patch 0002 does not apply"))
	if got := buildErrorText("fix", err); got != "patch 0002 does not apply" {
		t.Errorf("got %q", got)
	}
	// Another variant's prefix, or none, is kept.
	if got := buildErrorText("fix", errors.New("variant fixed: x")); got != "variant fixed: x" {
		t.Errorf("got %q", got)
	}
}

// run --decide plans no jobs ahead: each is recorded as not finished when
// it starts, so a session killed mid-round names the runs in flight.
func TestCheckpointDecideBeginsJobsAsTheyStart(t *testing.T) {
	dir := t.TempDir()
	sum := &record.Summary{Case: "c", Baseline: "base", Started: time.Now().UTC(), Dir: dir,
		Variants: []record.VariantSummary{{Name: "base"}, {Name: "fix"}}}
	cp := &checkpoint{sum: sum}
	if err := cp.start(nil); err != nil {
		t.Fatal(err)
	}
	a, b := record.Job{Variant: "base", Index: 0, Seed: 7}, record.Job{Variant: "fix", Index: 0, Seed: 7}
	for _, j := range []record.Job{a, b} {
		if err := cp.begin(j); err != nil {
			t.Fatal(err)
		}
	}
	if err := cp.done(a, &record.RunRecord{Variant: "base", Index: 0, Seed: 7, Outcome: record.Pass}); err != nil {
		t.Fatal(err)
	}
	got := readSummaryFile(t, dir)
	if fmt.Sprint(got.NotFinished) != fmt.Sprint([]record.Job{b}) || len(got.Variants[0].Runs) != 1 || len(got.Variants[1].Runs) != 0 {
		t.Errorf("after one of two runs of a round: not_finished %v, runs %d/%d", got.NotFinished, len(got.Variants[0].Runs), len(got.Variants[1].Runs))
	}
}

// The guest binary is named by its content, so a session keeps the binary
// it built while another tree builds another one into the same cache.
func TestGuestBinaryNamedByContent(t *testing.T) {
	if testing.Short() {
		t.Skip("builds pbguest")
	}
	cache := t.TempDir()
	a, err := ensureGuest(context.Background(), Options{CacheDir: cache})
	if err != nil {
		t.Fatal(err)
	}
	sum, err := fileSHA256(a)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(a) != "pbguest-"+sum[:16] {
		t.Errorf("guest binary %s is not named by its content %s", a, sum[:16])
	}
	b, err := ensureGuest(context.Background(), Options{CacheDir: cache})
	if err != nil || b != a {
		t.Errorf("the same source built to %s, then %s (%v)", a, b, err)
	}
	if left, _ := filepath.Glob(filepath.Join(cache, "guest", ".*.tmp")); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}
