// Package symbolize adds file:line to the stack frames of kernel reports
// using the build's vmlinux (addr2line), the way scripts/decode_stacktrace.sh
// does. It is separate from triage because it runs a program and reads files;
// triage stays pure.
package symbolize

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Symbolizer maps func+0xOFF/0xLEN frames to source lines of one vmlinux.
type Symbolizer struct {
	vmlinux string
	syms    map[string]uint64 // function name -> address
}

// ErrNoDebugInfo: the vmlinux has symbols but no DWARF, so addr2line can
// only repeat the function name. Build with a debug-info fragment.
var ErrNoDebugInfo = errors.New("vmlinux has no debug info")

// New reads the symbol table of vmlinux. It fails with ErrNoDebugInfo when
// the file has no .debug_info section.
func New(vmlinux string) (*Symbolizer, error) {
	f, err := elf.Open(vmlinux)
	if err != nil {
		return nil, fmt.Errorf("symbolize: %w", err)
	}
	defer f.Close()
	if f.Section(".debug_info") == nil {
		return nil, fmt.Errorf("symbolize %s: %w", vmlinux, ErrNoDebugInfo)
	}
	symbols, err := f.Symbols()
	if err != nil {
		return nil, fmt.Errorf("symbolize %s: %w", vmlinux, err)
	}
	s := &Symbolizer{vmlinux: vmlinux, syms: make(map[string]uint64, len(symbols))}
	for _, sym := range symbols {
		if elf.ST_TYPE(sym.Info) == elf.STT_FUNC && sym.Value != 0 {
			if _, dup := s.syms[sym.Name]; !dup {
				s.syms[sym.Name] = sym.Value
			}
		}
	}
	return s, nil
}

// frame matches "func+0x1a/0x2b0", optionally with a .isra/.constprop suffix.
var frame = regexp.MustCompile(`([A-Za-z_][A-Za-z0-9_.]*)\+0x([0-9a-f]+)/0x[0-9a-f]+`)

// Report returns report with " file:line" (and inlined callers, as
// "file:line (inlined in fn)") appended to every line that has a frame.
func (s *Symbolizer) Report(ctx context.Context, report string) (string, error) {
	lines := strings.Split(report, "\n")
	type site struct {
		line int
		addr uint64
	}
	var sites []site
	for i, l := range lines {
		m := frame.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		base, ok := s.syms[m[1]]
		if !ok {
			continue
		}
		off, err := strconv.ParseUint(m[2], 16, 64)
		if err != nil {
			continue
		}
		addr := base + off
		// A call trace holds return addresses: the call is the byte
		// before. RIP and the WARNING header name the instruction itself.
		exact := strings.Contains(l, "RIP:") || strings.Contains(l, "WARNING: CPU:")
		if !exact && off > 0 {
			addr--
		}
		sites = append(sites, site{i, addr})
	}
	if len(sites) == 0 {
		return report, nil
	}
	addrs := make([]uint64, len(sites))
	for i, st := range sites {
		addrs[i] = st.addr
	}
	locs, err := s.lookup(ctx, addrs)
	if err != nil {
		return report, err
	}
	for i, st := range sites {
		if loc := locs[addrs[i]]; loc != "" {
			lines[st.line] += " " + loc
		}
	}
	return strings.Join(lines, "\n"), nil
}

// lookup runs one addr2line for all addresses and returns, per address,
// "file:line" with inlining noted.
func (s *Symbolizer) lookup(ctx context.Context, addrs []uint64) (map[uint64]string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	args := []string{"-e", s.vmlinux, "-f", "-i", "-a"}
	for _, a := range addrs {
		args = append(args, fmt.Sprintf("0x%x", a))
	}
	out, err := exec.CommandContext(ctx, "addr2line", args...).Output()
	if err != nil {
		return nil, fmt.Errorf("addr2line: %w", err)
	}
	return parseAddr2line(out), nil
}

// parseAddr2line reads `addr2line -f -i -a` output: an "0x..." line, then
// function/location pairs, innermost (inlined) first.
func parseAddr2line(out []byte) map[uint64]string {
	res := map[uint64]string{}
	var cur uint64
	var fns, locs []string
	flush := func() {
		if len(locs) == 0 {
			return
		}
		// The outermost pair is the function the frame names; inlined
		// callees come first.
		parts := []string{trimPath(locs[len(locs)-1])}
		for i := len(locs) - 2; i >= 0; i-- {
			parts = append(parts, fmt.Sprintf("%s (inlined %s)", trimPath(locs[i]), fns[i]))
		}
		res[cur] = strings.Join(parts, " ")
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	pendingFn := ""
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(l, "0x") {
			flush()
			cur, _ = strconv.ParseUint(strings.TrimPrefix(l, "0x"), 16, 64)
			fns, locs, pendingFn = nil, nil, ""
			continue
		}
		if pendingFn == "" {
			pendingFn = l
			continue
		}
		if !strings.HasPrefix(l, "??") {
			fns = append(fns, pendingFn)
			locs = append(locs, strings.Fields(l)[0])
		}
		pendingFn = ""
	}
	flush()
	return res
}

// trimPath keeps a path from the kernel tree's root: addr2line prints the
// build's absolute or ../ relative paths.
func trimPath(p string) string {
	for _, marker := range []string{"/linux/", "../"} {
		if i := strings.LastIndex(p, marker); i >= 0 {
			p = p[i+len(marker):]
		}
	}
	return p
}

// Available reports whether addr2line is installed.
func Available() bool {
	_, err := exec.LookPath("addr2line")
	return err == nil
}
