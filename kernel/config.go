package kernel

import (
	"bufio"
	"bytes"
	"fmt"
	"regexp"
	"strings"

	"patchbay/safefile"
)

// configRequest is one line of a kconfig fragment: a symbol and the value the
// fragment asks for ("n" for "# CONFIG_X is not set").
type configRequest struct {
	File   string
	Line   int
	Symbol string
	Value  string
}

var (
	setLine   = regexp.MustCompile(`^(CONFIG_[A-Za-z0-9_]+)=(.*)$`)
	unsetLine = regexp.MustCompile(`^# (CONFIG_[A-Za-z0-9_]+) is not set$`)
)

// parseFragment reads the symbols a fragment requests; anything that is not
// a comment, a blank line or a symbol assignment is an error with its line.
func parseFragment(path string) ([]configRequest, error) {
	data, err := safefile.ReadFile(path, safefile.SmallCap)
	if err != nil {
		return nil, fmt.Errorf("kconfig fragment: %w", err)
	}
	var reqs []configRequest
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if m := setLine.FindStringSubmatch(line); m != nil {
			reqs = append(reqs, configRequest{path, n, m[1], m[2]})
			continue
		}
		if m := unsetLine.FindStringSubmatch(line); m != nil {
			reqs = append(reqs, configRequest{path, n, m[1], "n"})
			continue
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		return nil, fmt.Errorf("%s:%d: not a kconfig line: %q", path, n, line)
	}
	return reqs, sc.Err()
}

// parseDotConfig maps every symbol of a .config to its value ("n" when unset).
func parseDotConfig(data []byte) map[string]string {
	vals := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		if m := setLine.FindStringSubmatch(line); m != nil {
			vals[m[1]] = m[2]
		} else if m := unsetLine.FindStringSubmatch(line); m != nil {
			vals[m[1]] = "n"
		}
	}
	return vals
}

// laterWins keeps, for each symbol, only the request of the last fragment
// (and last line) naming it: merge_config.sh lets a later fragment override an
// earlier one, so the check must hold the value that was merged, not all of them.
func laterWins(reqs []configRequest) []configRequest {
	last := map[string]int{}
	for i, r := range reqs {
		last[r.Symbol] = i
	}
	var out []configRequest
	for i, r := range reqs {
		if last[r.Symbol] == i {
			out = append(out, r)
		}
	}
	return out
}

// verifyConfig checks that every requested symbol has the requested value in
// the final .config. olddefconfig silently drops symbols whose dependencies
// are missing; for this tool the worst outcome is lockdep silently off.
func verifyConfig(reqs []configRequest, final []byte) error {
	vals := parseDotConfig(final)
	var bad []string
	for _, r := range reqs {
		got, ok := vals[r.Symbol]
		if !ok {
			got = "n"
		}
		if got != r.Value {
			bad = append(bad, fmt.Sprintf("%s:%d: %s=%s requested, final .config has %s=%s (a dependency is missing or the symbol does not exist)",
				r.File, r.Line, r.Symbol, r.Value, r.Symbol, got))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("kconfig: %d requested symbol(s) not in the final .config:\n  %s", len(bad), strings.Join(bad, "\n  "))
	}
	return nil
}
