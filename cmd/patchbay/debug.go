package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"patchbay/harness"

	"patchbay/safefile"
)

func newSSHCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "ssh RUNDIR [-- COMMAND...]",
		Short: "Log into the VM of a run kept alive with run --keep",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			info, err := readKeepInfo(args[0])
			if err != nil {
				return err
			}
			sshPath, err := exec.LookPath("ssh")
			if err != nil {
				return fmt.Errorf("ssh client not installed (openssh-client): %w", err)
			}
			argv := []string{"ssh", "-i", info.KeyPath, "-p", strconv.Itoa(info.Port),
				"-o", "UserKnownHostsFile=" + filepath.Join(args[0], "known_hosts"),
				"-o", "StrictHostKeyChecking=yes", "-o", "LogLevel=ERROR", "root@127.0.0.1"}
			argv = append(argv, args[1:]...)
			// Replace this process: the terminal belongs to ssh now.
			return syscall.Exec(sshPath, argv, os.Environ())
		},
	}
}

func newConsoleCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "console RUNDIR",
		Short: "Follow the serial console of a run (kept alive or finished) until Ctrl-C",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return follow(cmd.Context(), filepath.Join(args[0], "console.log"), cmd.OutOrStdout())
		},
	}
}

func readKeepInfo(dir string) (*harness.KeepInfo, error) {
	data, err := safefile.ReadFile(filepath.Join(dir, "vm.json"), safefile.SmallCap)
	if err != nil {
		return nil, fmt.Errorf("%s: no kept VM here (start one with patchbay run --keep): %w", dir, err)
	}
	var info harness.KeepInfo
	if err := json.Unmarshal(data, &info); err != nil {
		return nil, fmt.Errorf("%s/vm.json: %w", dir, err)
	}
	if syscall.Kill(info.Pid, 0) != nil {
		return nil, fmt.Errorf("%s: the kept VM (QEMU pid %d) is gone", dir, info.Pid)
	}
	return &info, nil
}

// follow copies path to w and keeps copying what is appended, like tail -f.
func follow(ctx context.Context, path string, w io.Writer) error {
	f, err := safefile.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	for {
		if _, err := io.Copy(w, f); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(200 * time.Millisecond):
		}
	}
}
