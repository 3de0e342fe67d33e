package reproducer

import (
	"fmt"
	"strings"
)

// readme says what the directory reproduces and how to run it anywhere.
func readme(in Input, patches []patchLine) string {
	c := in.Case
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	p("# Reproducer: %s / %s, seed %d", oneLine(c.Name), in.Variant, in.Seed)
	p("")
	p("Written by `patchbay reproducer`. It runs the recorded run again without patchbay: the same")
	p("mkfs, mount options, work files, writers, defrag workers, seed, the three verify passes (live,")
	p("after drop_caches, after a remount) and `e2fsck -fn`, judged by the variant's expectations.")
	p("")
	if r := in.Record; r != nil {
		p("Recorded: run %s#%d on kernel %s (%s): **%s**", r.Variant, r.Index, r.Release, r.Kernel, r.Outcome)
		for _, why := range r.Reasons {
			p("- %s", oneLine(why))
		}
		p("")
	}
	p("## Files")
	p("- `run.sh`: POSIX sh; `./run.sh DEVICE` as root. DEVICE (at least %d MiB) is erased. Refuses a", c.VM.ScratchMB)
	p("  device that is mounted, swapped on or has a mounted partition. Prints one `FAIL: ...` line per")
	p("  broken expectation, then `patchbay-repro: PASS` (exit 0) or `patchbay-repro: FAIL` (exit 1);")
	p("  exit 2 when it could not run. Its files are in /tmp/pbrepro, the disk is mounted on /mnt/scratch.")
	p("- `pbguest`: the static workload binary (x86-64, no libc needed).")
	p("- `config`: the kernel .config the run booted (%s).", in.Kernel.Release)
	p("- `patches.txt` and `patches/`: the patch stack, in order, with the sha256 of each patch's bytes.")
	if in.Record != nil {
		p("- `recorded.json`: patchbay's record of the original run.")
	}
	p("")
	p("## Kernel")
	p("Source: `%s`. Apply the patches in order (`git am` for mails, else `patch -p1`):", oneLine(kernelSource(in)))
	p("")
	if len(patches) == 0 {
		p("(no patches: the stock kernel)")
	}
	for _, l := range patches {
		p("%d. `%s` %s (sha256 %s)", l.N, l.File, oneLine(l.Subject), l.Sum)
	}
	p("")
	p("then `cp config .config && make ARCH=x86_64 olddefconfig && make ARCH=x86_64 -j$(nproc) bzImage`.")
	p("Everything the guest needs is built in (no modules). Kernel command line used: `%s`.", oneLine(c.Kernel.Cmdline))
	p("")
	p("## Running it")
	p("On any x86-64 machine or VM running that kernel, with e2fsprogs, util-linux and a spare disk:")
	p("")
	p("    ./run.sh /dev/vdb")
	p("")
	p("The original ran in QEMU with %d CPUs and %d MiB of memory; timing matters for races, so a", c.VM.CPUs, c.VM.MemoryMB)
	p("similar VM reproduces best. In QEMU, with any Debian-like root image `root.img` (bash not needed;")
	p("e2fsprogs, util-linux, coreutils, mawk/gawk): put this directory on a disk of its own and let")
	p("`vm-init.sh` run it on the third disk and power off (this is how patchbay's test runs it):")
	p("")
	p("    mkfs.ext4 -q -d . ../repro.img 64M && qemu-img create -f raw ../scratch.raw %dM", c.VM.ScratchMB)
	p("    qemu-system-x86_64 -m %d -smp %d -nographic -no-reboot -kernel bzImage \\", c.VM.MemoryMB, c.VM.CPUs)
	p("      -drive file=root.img,if=virtio,format=raw,snapshot=on \\")
	p("      -drive file=../repro.img,if=virtio,format=raw,readonly=on -drive file=../scratch.raw,if=virtio,format=raw \\")
	p("      -append 'console=ttyS0 root=/dev/vda rw pci=noacpi %s %s'", oneLine(c.Kernel.Cmdline), InitArgs)
	p("")
	p("A run takes about the workload's duration (%s) plus verify and e2fsck. A kernel that hangs", c.Workload.Duration.D())
	p("leaves the script waiting: watch the console for `INFO: task ... blocked`. A crash ends the machine;")
	p("the console shows the report. Not replayed: patchbay's iomap tracepoint counts")
	p("(filesystem.check_buffered_iomap), which only decide whether a case's setup took effect.")
	return b.String()
}
