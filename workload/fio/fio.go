// Package fio is the fio peer workload: a case's fio job file run in the
// guest for the case duration, then its verify-only job live, after
// drop_caches and after a remount; fio's output becomes the run record's
// writers, defrag workers and verify passes. It drives the guest through
// Guest, so it needs no VM of its own.
package fio

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"patchbay/record"
	"patchbay/workload/guestcmd"
)

// Guest is the machine under test as a run sees it: commands run over SSH,
// evidence saved in the run directory.
type Guest interface {
	// Sh runs cmd in the guest's shell within timeout; a non-empty save
	// names the file in the run directory that gets its output.
	Sh(ctx context.Context, timeout time.Duration, save, cmd string) ([]byte, error)
	Save(name string, data []byte) error
	SaveJSON(name string, v any) error
	Upload(ctx context.Context, data io.Reader, path string, mode os.FileMode) error
}

// Run is the fio workload of one run.
type Run struct {
	Guest    Guest
	Dir      string // PB_DIR: where the job's files go, on the scratch mount
	Tmp      string // guest folder for the job files and fio's output
	Seed     uint64
	Duration time.Duration // the case's workload duration
}

func (r Run) jobPath() string   { return r.Tmp + "/job.fio" }
func (r Run) checkPath() string { return r.Tmp + "/verify.fio" }

// Report is the part of fio's --output-format=json that this package
// reads.
type Report struct {
	Version string `json:"fio version"`
	Jobs    []Job  `json:"jobs"`
}

// Job is one job (or one clone of numjobs) in fio's JSON output.
type Job struct {
	Name       string         `json:"jobname"`
	Error      int            `json:"error"`
	RuntimeMS  int64          `json:"job_runtime"`
	Read       Dir            `json:"read"`
	Write      Dir            `json:"write"`
	TotalErr   int64          `json:"total_err"`   // with continue_on_error
	FirstError int            `json:"first_error"` // with continue_on_error
	Options    map[string]any `json:"job options"`
}

// Dir is one data direction of a job.
type Dir struct {
	IOBytes  int64 `json:"io_bytes"`
	TotalIOs int64 `json:"total_ios"`
}

// jsonDoc returns the JSON document in fio's --output file. fio writes its
// error messages (verify failures among them) there too, from other
// threads, before the document and even into its first line ("verify: bad
// ma{"), so the document starts at the "{" before its "fio version" key, or
// failing that at the first line that is only "{".
func jsonDoc(out []byte) ([]byte, error) {
	start := -1
	if i := bytes.Index(out, []byte(`"fio version"`)); i >= 0 {
		start = bytes.LastIndexByte(out[:i], '{')
	} else if bytes.HasPrefix(out, []byte("{\n")) {
		start = 0
	} else if i := bytes.Index(out, []byte("\n{\n")); i >= 0 {
		start = i + 1
	}
	if start < 0 {
		return nil, errors.New("fio output has no JSON document")
	}
	return out[start:], nil
}

// ParseReport reads fio's JSON output (see jsonDoc).
func ParseReport(out []byte) (*Report, error) {
	js, err := jsonDoc(out)
	if err != nil {
		return nil, err
	}
	var rep Report
	if err := json.NewDecoder(bytes.NewReader(js)).Decode(&rep); err != nil {
		return nil, fmt.Errorf("fio JSON: %w", err)
	}
	return &rep, nil
}

// verifyLine matches fio's messages for a block that failed
// verification: "verify: bad magic header ...", "crc32c: verify failed at
// file ...", "verify: bad header offset ...".
var verifyLine = regexp.MustCompile(`(?m)^\s*(?:verify: bad .*|[a-z0-9_-]+: verify failed .*)$`)

// verifyFailures returns fio's lines about blocks that failed
// verification, in order.
func verifyFailures(text []byte) []string {
	var lines []string
	for _, m := range verifyLine.FindAll(text, -1) {
		lines = append(lines, strings.TrimSpace(string(m)))
	}
	return lines
}

// errnoName names fio's error numbers (errno values) like pbguest does.
func errnoName(n int) string {
	e := syscall.Errno(n)
	if e == unix.EOPNOTSUPP {
		return "EOPNOTSUPP"
	}
	if name := unix.ErrnoName(e); name != "" {
		return name
	}
	return fmt.Sprintf("errno%d", n)
}

// failures returns the verify failures (fio's lines, all jobs mixed) that
// name this job's file; all of them when the job names no single file.
func (j Job) failures(all []string) []string {
	name, _ := j.Options["filename"].(string)
	if name == "" || strings.Contains(name, ":") {
		return all
	}
	var mine []string
	for _, l := range all {
		if strings.Contains(l, "/"+name+" offset") || strings.Contains(l, " "+name+" offset") {
			mine = append(mine, l)
		}
	}
	return mine
}

// Engines maps each job section of a fio job file to its ioengine,
// inheriting from [global] sections above it as fio does; "" when unset.
func Engines(job []byte) map[string]string {
	engines := map[string]string{}
	global, section, inGlobal := "", "", false
	for _, line := range strings.Split(string(job), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == ';' || line[0] == '#' {
			continue
		}
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			section = strings.TrimSpace(line[1 : len(line)-1])
			inGlobal = section == "global"
			if !inGlobal {
				engines[section] = global
			}
			continue
		}
		k, v, _ := strings.Cut(line, "=")
		if strings.TrimSpace(k) != "ioengine" || section == "" {
			continue
		}
		v = strings.TrimSpace(v)
		if inGlobal {
			global = v
		} else {
			engines[section] = v
		}
	}
	return engines
}

// Records turns the workload's fio report into the run record's
// writers (every job, with its error) and defrag workers (jobs of the
// e4defrag ioengine). exit is fio's exit status; text its other output.
func Records(rep *Report, engines map[string]string, exit int, text []byte) ([]record.WriterResult, []record.DefragResult) {
	var writers []record.WriterResult
	var defrag []record.DefragResult
	failures := verifyFailures(text)
	anyErr := false
	for i, j := range rep.Jobs {
		w := record.WriterResult{ID: i, Mode: "fio:" + j.Name, Elapsed: float64(j.RuntimeMS) / 1000}
		if engines[j.Name] == "e4defrag" {
			w.Mode = "fio-e4defrag:" + j.Name
			d := record.DefragResult{
				Attempts: j.Write.TotalIOs + j.TotalErr,
				Results:  map[string]int64{"moved": j.Write.TotalIOs},
				// Bytes the ioctls reported moved, in 4 KiB blocks.
				BlocksMoved: j.Write.IOBytes / 4096,
				Elapsed:     w.Elapsed,
			}
			if j.TotalErr > 0 {
				d.Results[errnoName(j.FirstError)] += j.TotalErr
			}
			defrag = append(defrag, d)
		} else {
			w.Writes = j.Write.TotalIOs
			w.Readbacks = j.Read.TotalIOs
		}
		// With continue_on_error, error is the first of the errors fio
		// counted in total_err and went on after: not a stop.
		if j.Error != 0 && j.TotalErr == 0 {
			anyErr = true
			msg := fmt.Sprintf("fio job %s stopped with error %d (%s)", j.Name, j.Error, errnoName(j.Error))
			if mine := j.failures(failures); j.Error == int(syscall.EILSEQ) && len(mine) > 0 {
				msg += fmt.Sprintf(": %d verify failure(s), first: %s", len(mine), mine[0])
			}
			w.Errors = append(w.Errors, msg)
		}
		writers = append(writers, w)
	}
	if exit != 0 && !anyErr {
		msg := fmt.Sprintf("fio exited %d", exit)
		if len(failures) > 0 {
			msg += fmt.Sprintf(": %d verify failure(s), first: %s", len(failures), failures[0])
		} else if l := guestcmd.LastLine(string(text)); l != "" {
			msg += ": " + l
		}
		writers = append(writers, record.WriterResult{ID: len(rep.Jobs), Mode: "fio", Errors: []string{msg}})
	}
	return writers, defrag
}

// VerifyResult turns one verify-only pass into a verify phase: every
// block fio read, and those that failed verification.
func VerifyResult(phase string, rep *Report, exit int, text []byte) (record.VerifyResult, error) {
	v := record.VerifyResult{Phase: phase, Counts: map[string]int64{}}
	var errs, stopped int64
	var firstErr string
	for _, j := range rep.Jobs {
		v.Blocks += j.Read.IOBytes / 4096
		errs += j.TotalErr
		if j.Error != 0 && j.TotalErr == 0 {
			stopped++
			if firstErr == "" {
				firstErr = fmt.Sprintf("job %s: error %d (%s)", j.Name, j.Error, errnoName(j.Error))
			}
		}
	}
	failures := verifyFailures(text)
	bad := max(int64(len(failures)), errs)
	if bad == 0 && (stopped > 0 || exit != 0) {
		// fio failed without saying a block was bad: not a verdict on the
		// data (a missing file, a bad option).
		why := firstErr
		if why == "" {
			why = guestcmd.LastLine(string(text))
		}
		return v, fmt.Errorf("fio verify %s: exit %d: %s", phase, exit, why)
	}
	v.BadTotal = bad
	v.Counts["ok"] = max(v.Blocks-bad, 0)
	if bad > 0 {
		v.Counts["verify-failed"] = bad
	}
	for i, f := range failures {
		if i == 20 {
			break
		}
		b, _ := json.Marshal(f)
		v.Bad = append(v.Bad, b)
	}
	return v, nil
}

// env is the environment the job files see.
func (r Run) env() string {
	return fmt.Sprintf("PB_DIR=%s PB_RUNTIME=%d PB_SEED=%d", r.Dir, int(r.Duration.Seconds()), r.Seed)
}

// run runs fio on a job file in the guest, saving its JSON and text
// output as name.json and name.txt in the run directory; it returns the
// parsed report, fio's exit status and its text output.
func (r Run) run(ctx context.Context, name, job string, timeout time.Duration) (*Report, int, []byte, error) {
	g := r.Guest
	jsonPath := r.Tmp + "/" + name + ".json"
	cmd := fmt.Sprintf("mkdir -p %s && cd %s && %s fio --output-format=json --output=%s %s > %s/%s.txt 2>&1; echo \"fio-exit=$?\"",
		r.Dir, r.Dir, r.env(), jsonPath, job, r.Tmp, name)
	out, err := g.Sh(ctx, timeout, "", cmd)
	if err != nil {
		return nil, 0, nil, err
	}
	exit := -1
	if i := strings.LastIndex(string(out), "fio-exit="); i >= 0 {
		fmt.Sscanf(string(out[i:]), "fio-exit=%d", &exit)
	} else {
		return nil, 0, nil, fmt.Errorf("fio %s: no exit status", name)
	}
	text, err := g.Sh(ctx, time.Minute, name+".txt", "cat "+r.Tmp+"/"+name+".txt")
	if err != nil {
		return nil, exit, nil, err
	}
	raw, err := g.Sh(ctx, time.Minute, "", "cat "+jsonPath)
	if err != nil {
		return nil, exit, text, err
	}
	rep, err := ParseReport(raw)
	if err != nil {
		g.Save(name+".json", raw)
		return nil, exit, text, fmt.Errorf("fio %s (exit %d): %w: %s", name, exit, err, guestcmd.LastLine(string(text)))
	}
	js, _ := jsonDoc(raw)
	g.Save(name+".json", js) // the messages before it are in name.txt too
	return rep, exit, text, nil
}

// Workload uploads the job file and the verify-only job file check, runs
// the job for the duration plus grace, and puts its writers and defrag
// workers into rec.
func (r Run) Workload(ctx context.Context, job, check []byte, grace time.Duration, rec *record.RunRecord) error {
	g := r.Guest
	g.Save("fio-job.fio", job)
	uctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := g.Upload(uctx, bytes.NewReader(job), r.jobPath(), 0o644); err != nil {
		return err
	}
	g.Save("fio-verify.fio", check)
	if err := g.Upload(uctx, bytes.NewReader(check), r.checkPath(), 0o644); err != nil {
		return err
	}
	rep, exit, text, err := r.run(ctx, "fio-workload", r.jobPath(), r.Duration+grace)
	if err != nil {
		return err
	}
	rec.Writers, rec.Defrag = Records(rep, Engines(job), exit, text)
	return g.SaveJSON("workload.json", rep)
}

// Verify runs the verify-only job live, after drop_caches and after
// remount (a shell command that remounts the scratch file system), like
// the patchbay oracle's three phases, appending each pass to rec.Verify.
func (r Run) Verify(ctx context.Context, remount string, rec *record.RunRecord) error {
	g := r.Guest
	steps := []struct{ phase, before string }{
		{"live", ""},
		{"dropcache", "sync && echo 3 > /proc/sys/vm/drop_caches"},
		{"remount", remount},
	}
	results := map[string]record.VerifyResult{}
	defer g.SaveJSON("verify.json", results)
	for _, s := range steps {
		if s.before != "" {
			if _, err := g.Sh(ctx, 5*time.Minute, "", s.before); err != nil {
				return err
			}
		}
		rep, exit, text, err := r.run(ctx, "fio-verify-"+s.phase, r.checkPath(), 10*time.Minute)
		if err != nil {
			return err
		}
		v, err := VerifyResult(s.phase, rep, exit, text)
		if err != nil {
			return err
		}
		results[s.phase] = v
		rec.Verify = append(rec.Verify, v)
	}
	return nil
}
