package harness

import (
	"context"
	"fmt"
	"time"

	"patchbay/triage"
)

// HangGrace is how long after its own duration a workload may still run
// once the console shows that the kernel stopped making progress (a hung
// task, an RCU stall, a soft lockup, a lockdep report) before the run ends
// as a hang: enough for the rest of the report to reach the console,
// instead of the whole workload deadline (2 min + twice the duration).
const HangGrace = 30 * time.Second

// hangEvidence returns the title of the first finding in console text that
// says the kernel may not make progress, or "".
func hangEvidence(console []byte) string {
	for _, f := range triage.Parse(console) {
		switch f.Kind {
		case triage.KindHungTask, triage.KindRCUStall, triage.KindSoftLockup, triage.KindLockdep:
			return f.Title
		}
	}
	return ""
}

// watchHang polls console() every poll until ctx ends. Once the text
// after offset from holds hang evidence and the workload is past its own
// end (notBefore), it waits grace and calls stop with the reason, once.
func watchHang(ctx context.Context, console func() []byte, from int, notBefore time.Time, grace, poll time.Duration, stop func(string)) {
	t := time.NewTicker(poll)
	defer t.Stop()
	var seen string
	var since time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if seen == "" {
				text := console()
				if len(text) > from {
					if e := hangEvidence(text[from:]); e != "" {
						seen, since = e, now
					}
				}
			}
			if seen == "" {
				continue
			}
			end := notBefore
			if since.After(end) {
				end = since
			}
			if now.Sub(end) >= grace {
				stop(fmt.Sprintf("console shows %q and the workload has not finished %s after its end", seen, grace))
				return
			}
		}
	}
}
