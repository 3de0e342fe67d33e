// Command patchbay tests Linux kernel patch series in QEMU: it builds each
// variant's kernel, boots it, runs a case's workload over SSH and reports
// the variants side by side.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	code := 0
	if err := newRootCommand().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "patchbay:", err)
		code = exitCode(err)
	}
	stop()
	os.Exit(code)
}
