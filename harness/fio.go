package harness

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"slices"
	"time"

	"patchbay/casespec"
	"patchbay/record"
	"patchbay/safefile"
	"patchbay/workload/fio"
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

// fioRun is the run's fio workload (workload/fio) on this guest.
func (r *Runner) fioRun(g *guest, seed uint64) fio.Run {
	return fio.Run{Guest: g, Dir: mountPoint + "/fio", Tmp: guestTmp, Seed: seed, Duration: r.Case.Workload.Duration.D()}
}

// fioWorkload reads the case's job files and runs the job for the case
// duration, bounded like the patchbay workload.
func (r *Runner) fioWorkload(ctx context.Context, g *guest, rec *record.RunRecord) error {
	f := r.Case.Workload.Fio
	job, err := safefile.ReadFile(r.Case.Path(f.Job), safefile.SmallCap)
	if err != nil {
		return fmt.Errorf("fio job: %w", err)
	}
	check, err := safefile.ReadFile(r.Case.Path(f.Verify), safefile.SmallCap)
	if err != nil {
		return fmt.Errorf("fio verify job: %w", err)
	}
	grace := r.WorkloadGrace
	if grace == 0 {
		grace = 2*time.Minute + r.Case.Workload.Duration.D()
	}
	return r.fioRun(g, rec.Seed).Workload(ctx, job, check, grace, rec)
}

// fioVerify runs the verify-only job live, after drop_caches and after a
// remount.
func (r *Runner) fioVerify(ctx context.Context, g *guest, rec *record.RunRecord) error {
	remount := "umount " + mountPoint + " && " + mountCommand(r.Case.Filesystem.MountOptions)
	return r.fioRun(g, rec.Seed).Verify(ctx, remount, rec)
}
