package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"patchbay/casespec"
	"patchbay/record"
	"patchbay/safefile"
)

var debianPackage = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`)

// validateWorkloadKind checks workload.kind and, for fio, its job files and
// that fio is installed in the guest.
func (c *Case) validateWorkloadKind(bad func(field, msg string)) {
	w := c.Workload
	switch w.Kind {
	case casespec.WorkloadPatchbay:
		if w.Fio != (casespec.FioSpec{}) {
			bad("workload.fio", "only used with workload.kind: fio")
		}
	case casespec.WorkloadFio:
		if w.Fio.Job == "" {
			bad("workload.fio.job", "missing: the fio job file, relative to the case folder")
		}
		if w.Fio.Verify == "" {
			bad("workload.fio.verify", "missing: a verify-only fio job file (reads with verify=), relative to the case folder")
		}
		for field, f := range map[string]string{"workload.fio.job": w.Fio.Job, "workload.fio.verify": w.Fio.Verify} {
			if f == "" {
				continue
			}
			if _, err := os.Stat(c.Path(f)); err != nil {
				bad(field, fmt.Sprintf("%s: no such file", f))
			}
		}
		if !slices.Contains(c.VM.Packages, "fio") {
			bad("vm.packages", "workload.kind fio needs fio in the guest image: add vm.packages: [fio]")
		}
		if c.Filesystem.CheckBufferedIomap {
			bad("filesystem.check_buffered_iomap", "needs workload.kind patchbay: the check counts iomap events while pbguest prepare writes the work files")
		}
		if c.Filesystem.JournalData {
			bad("filesystem.journal_data", "needs workload.kind patchbay: pbguest prepare sets +j on its work files, fio makes its own")
		}
	default:
		bad("workload.kind", fmt.Sprintf("%q: want %s (default) or %s", w.Kind, casespec.WorkloadPatchbay, casespec.WorkloadFio))
	}
}

// Guest paths of the fio workload.
const (
	fioDir       = mountPoint + "/fio" // PB_DIR: the job's files
	fioJobPath   = guestTmp + "/job.fio"
	fioCheckPath = guestTmp + "/verify.fio"
)

// FioReport is the part of fio's --output-format=json that the harness
// reads.
type FioReport struct {
	Version string   `json:"fio version"`
	Jobs    []FioJob `json:"jobs"`
}

// FioJob is one job (or one clone of numjobs) in fio's JSON output.
type FioJob struct {
	Name       string         `json:"jobname"`
	Error      int            `json:"error"`
	RuntimeMS  int64          `json:"job_runtime"`
	Read       FioDir         `json:"read"`
	Write      FioDir         `json:"write"`
	TotalErr   int64          `json:"total_err"`   // with continue_on_error
	FirstError int            `json:"first_error"` // with continue_on_error
	Options    map[string]any `json:"job options"`
}

// FioDir is one data direction of a job.
type FioDir struct {
	IOBytes  int64 `json:"io_bytes"`
	TotalIOs int64 `json:"total_ios"`
}

// fioJSON returns the JSON document in fio's --output file. fio writes its
// error messages (verify failures among them) there too, from other
// threads, before the document and even into its first line ("verify: bad
// ma{"), so the document starts at the "{" before its "fio version" key, or
// failing that at the first line that is only "{".
func fioJSON(out []byte) ([]byte, error) {
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

// parseFioJSON reads fio's JSON output (see fioJSON).
func parseFioJSON(out []byte) (*FioReport, error) {
	js, err := fioJSON(out)
	if err != nil {
		return nil, err
	}
	var rep FioReport
	if err := json.NewDecoder(bytes.NewReader(js)).Decode(&rep); err != nil {
		return nil, fmt.Errorf("fio JSON: %w", err)
	}
	return &rep, nil
}

// fioVerifyLine matches fio's messages for a block that failed
// verification: "verify: bad magic header ...", "crc32c: verify failed at
// file ...", "verify: bad header offset ...".
var fioVerifyLine = regexp.MustCompile(`(?m)^\s*(?:verify: bad .*|[a-z0-9_-]+: verify failed .*)$`)

// fioVerifyFailures returns fio's lines about blocks that failed
// verification, in order.
func fioVerifyFailures(text []byte) []string {
	var lines []string
	for _, m := range fioVerifyLine.FindAll(text, -1) {
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
func (j FioJob) failures(all []string) []string {
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

// fioEngines maps each job section of a fio job file to its ioengine,
// inheriting from [global] sections above it as fio does; "" when unset.
func fioEngines(job []byte) map[string]string {
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

// fioRecords turns the workload's fio report into the run record's
// writers (every job, with its error) and defrag workers (jobs of the
// e4defrag ioengine). exit is fio's exit status; text its other output.
func fioRecords(rep *FioReport, engines map[string]string, exit int, text []byte) ([]record.WriterResult, []record.DefragResult) {
	var writers []record.WriterResult
	var defrag []record.DefragResult
	failures := fioVerifyFailures(text)
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
		} else if l := lastLine(string(text)); l != "" {
			msg += ": " + l
		}
		writers = append(writers, record.WriterResult{ID: len(rep.Jobs), Mode: "fio", Errors: []string{msg}})
	}
	return writers, defrag
}

// fioVerifyResult turns one verify-only pass into a verify phase: every
// block fio read, and those that failed verification.
func fioVerifyResult(phase string, rep *FioReport, exit int, text []byte) (record.VerifyResult, error) {
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
	failures := fioVerifyFailures(text)
	bad := max(int64(len(failures)), errs)
	if bad == 0 && (stopped > 0 || exit != 0) {
		// fio failed without saying a block was bad: not a verdict on the
		// data (a missing file, a bad option).
		why := firstErr
		if why == "" {
			why = lastLine(string(text))
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

// fioEnv is the environment the job files see.
func (r *Runner) fioEnv(seed uint64) string {
	return fmt.Sprintf("PB_DIR=%s PB_RUNTIME=%d PB_SEED=%d", fioDir, int(r.Case.Workload.Duration.D().Seconds()), seed)
}

// fioRun runs fio on a job file in the guest, saving its JSON and text
// output as name.json and name.txt in the run directory; it returns the
// parsed report, fio's exit status and its text output.
func (r *Runner) fioRun(ctx context.Context, g *guest, seed uint64, name, job, extra string, timeout time.Duration) (*FioReport, int, []byte, error) {
	jsonPath := guestTmp + "/" + name + ".json"
	cmd := fmt.Sprintf("mkdir -p %s && cd %s && %s fio --output-format=json --output=%s %s %s > %s/%s.txt 2>&1; echo \"fio-exit=$?\"",
		fioDir, fioDir, r.fioEnv(seed), jsonPath, extra, job, guestTmp, name)
	out, err := g.sh(ctx, timeout, "", cmd)
	if err != nil {
		return nil, 0, nil, err
	}
	exit := -1
	if i := strings.LastIndex(string(out), "fio-exit="); i >= 0 {
		fmt.Sscanf(string(out[i:]), "fio-exit=%d", &exit)
	} else {
		return nil, 0, nil, fmt.Errorf("fio %s: no exit status", name)
	}
	text, err := g.sh(ctx, time.Minute, name+".txt", "cat "+guestTmp+"/"+name+".txt")
	if err != nil {
		return nil, exit, nil, err
	}
	raw, err := g.sh(ctx, time.Minute, "", "cat "+jsonPath)
	if err != nil {
		return nil, exit, text, err
	}
	rep, err := parseFioJSON(raw)
	if err != nil {
		g.save(name+".json", raw)
		return nil, exit, text, fmt.Errorf("fio %s (exit %d): %w: %s", name, exit, err, lastLine(string(text)))
	}
	js, _ := fioJSON(raw)
	g.save(name+".json", js) // the messages before it are in name.txt too
	return rep, exit, text, nil
}

// fioWorkload uploads the case's job files and runs the job for the case
// duration, bounded like the patchbay workload.
func (r *Runner) fioWorkload(ctx context.Context, g *guest, rec *record.RunRecord) error {
	f := r.Case.Workload.Fio
	job, err := safefile.ReadFile(r.Case.Path(f.Job), safefile.SmallCap)
	if err != nil {
		return fmt.Errorf("fio job: %w", err)
	}
	g.save("fio-job.fio", job)
	uctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := g.m.Upload(uctx, bytes.NewReader(job), fioJobPath, 0o644); err != nil {
		return err
	}
	check, err := safefile.ReadFile(r.Case.Path(f.Verify), safefile.SmallCap)
	if err != nil {
		return fmt.Errorf("fio verify job: %w", err)
	}
	g.save("fio-verify.fio", check)
	if err := g.m.Upload(uctx, bytes.NewReader(check), fioCheckPath, 0o644); err != nil {
		return err
	}
	dur := r.Case.Workload.Duration.D()
	grace := r.WorkloadGrace
	if grace == 0 {
		grace = 2*time.Minute + dur
	}
	rep, exit, text, err := r.fioRun(ctx, g, rec.Seed, "fio-workload", fioJobPath, "", dur+grace)
	if err != nil {
		return err
	}
	rec.Writers, rec.Defrag = fioRecords(rep, fioEngines(job), exit, text)
	return g.saveJSON("workload.json", rep)
}

// fioVerify runs the verify-only job live, after drop_caches and after a
// remount, like the patchbay oracle's three phases.
func (r *Runner) fioVerify(ctx context.Context, g *guest, rec *record.RunRecord) error {
	mount := mountCommand(r.Case.Filesystem.MountOptions)
	steps := []struct{ phase, before string }{
		{"live", ""},
		{"dropcache", "sync && echo 3 > /proc/sys/vm/drop_caches"},
		{"remount", "umount " + mountPoint + " && " + mount},
	}
	results := map[string]record.VerifyResult{}
	defer g.saveJSON("verify.json", results)
	for _, s := range steps {
		if s.before != "" {
			if _, err := g.sh(ctx, 5*time.Minute, "", s.before); err != nil {
				return err
			}
		}
		rep, exit, text, err := r.fioRun(ctx, g, rec.Seed, "fio-verify-"+s.phase, fioCheckPath, "", 10*time.Minute)
		if err != nil {
			return err
		}
		v, err := fioVerifyResult(s.phase, rep, exit, text)
		if err != nil {
			return err
		}
		results[s.phase] = v
		rec.Verify = append(rec.Verify, v)
	}
	return nil
}
