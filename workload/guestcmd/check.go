package guestcmd

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
)

var (
	mountOption = regexp.MustCompile(`^[A-Za-z0-9_=.:/-]+$`)
	mkfsArg     = regexp.MustCompile(`^[A-Za-z0-9_=.,:/+^-]+$`)
	// The scratch disk is mounted -t ext4: the programs that make a file
	// system the ext4 driver mounts.
	mkfsPrograms = []string{"mkfs.ext4", "mkfs.ext3", "mkfs.ext2", "mke2fs"}
)

// CheckMountOptions accepts comma-separated tokens of letters, digits and
// _=.:/- (what mount -o takes), nothing a shell would read.
func CheckMountOptions(o string) error {
	if o == "" {
		return nil
	}
	for _, tok := range strings.Split(o, ",") {
		if !mountOption.MatchString(tok) {
			return fmt.Errorf("%q: option %q: want comma-separated options of letters, digits and _=.:/-", o, tok)
		}
	}
	return nil
}

// CheckMkfs accepts a known mkfs program and arguments free of shell
// metacharacters; Build appends the device. Case validation calls both
// checks, so no case puts a shell word into the lines Build writes.
func CheckMkfs(cmd string) error {
	f := strings.Fields(cmd)
	if len(f) == 0 {
		return fmt.Errorf("empty: want a program such as mkfs.ext4 and its options")
	}
	if !slices.Contains(mkfsPrograms, f[0]) {
		return fmt.Errorf("%q: program %q: want one of %s", cmd, f[0], strings.Join(mkfsPrograms, ", "))
	}
	for _, a := range f[1:] {
		if !mkfsArg.MatchString(a) {
			return fmt.Errorf("%q: argument %q: want letters, digits and _=.,:/+^- only", cmd, a)
		}
	}
	return nil
}
