package triage

import (
	"regexp"
	"strings"
)

// logLine is one input line split into what the kernel printed and the
// prefixes the console, printk or syslog put in front of it.
type logLine struct {
	raw     string // the input line, CRs trimmed, cut to MaxLineBytes
	text    string // the message: syslog, timestamp and caller prefixes removed
	caller  string // PRINTK_CALLER tag ("T123", "C1"), "" when absent
	stamped bool   // a printk timestamp was found
}

// reStampInside finds a printk timestamp that is not at the start of the
// line: a kernel message that interrupted user-space output on the console.
var reStampInside = regexp.MustCompile(`\[ *\d+\.\d{6}\]`)

// splitLines splits the input into lines; a trailing newline does not start
// a new line, so len(result) is the line count Finding.Line refers to.
func splitLines(input []byte) []logLine {
	s := string(input)
	n := strings.Count(s, "\n") + 1
	if strings.HasSuffix(s, "\n") {
		n--
	}
	out := make([]logLine, 0, n)
	for i := 0; i < n; i++ {
		var l string
		if j := strings.IndexByte(s, '\n'); j >= 0 {
			l, s = s[:j], s[j+1:]
		} else {
			l, s = s, ""
		}
		out = append(out, parseLine(l))
	}
	return out
}

func parseLine(l string) logLine {
	l = strings.Trim(l, "\r")
	if len(l) > MaxLineBytes {
		l = l[:MaxLineBytes]
	}
	ll := logLine{raw: l}
	ll.text, ll.caller, ll.stamped = stripPrefixes(l)
	if !ll.stamped {
		// The kernel line may follow user-space output on the same
		// console line; keep only the kernel part.
		if loc := reStampInside.FindStringIndex(l); loc != nil && loc[0] > 0 {
			ll.text, ll.caller, ll.stamped = stripPrefixes(l[loc[0]:])
		}
	}
	// Interior CRs are serial noise; they never belong to a message.
	if strings.IndexByte(ll.text, '\r') >= 0 {
		ll.text = strings.ReplaceAll(ll.text, "\r", "")
	}
	return ll
}

// stripPrefixes removes "<4>", "Mon DD HH:MM:SS host kernel: ",
// "[   12.345678]" and "[ T123]" / "[ C1]" from the front of s.
func stripPrefixes(s string) (text, caller string, stamped bool) {
	if len(s) >= 3 && s[0] == '<' {
		if k := strings.IndexByte(s[:min(len(s), 6)], '>'); k > 1 && allDigits(s[1:k]) {
			s = s[k+1:]
		}
	}
	journal := false
	if k := journalPrefix(s); k > 0 {
		s, journal = s[k:], true
	}
	prefixed := false
	if len(s) > 0 && s[0] == '[' {
		if k := strings.IndexByte(s[:min(len(s), 32)], ']'); k > 0 && isStamp(s[1:k]) {
			s, prefixed, stamped = s[k+1:], true, true
		}
	}
	if len(s) > 0 && s[0] == '[' {
		if k := strings.IndexByte(s[:min(len(s), 16)], ']'); k > 0 {
			if c := strings.TrimLeft(s[1:k], " "); isCaller(c) {
				s, caller, prefixed = s[k+1:], c, true
			}
		}
	}
	if prefixed && len(s) > 0 && s[0] == ' ' {
		s = s[1:]
	}
	// journald drops the printk time; its lines are kernel lines all the same.
	return s, caller, stamped || journal
}

// journalPrefix returns the length of a "Mon DD HH:MM:SS host kernel: "
// prefix, or 0.
func journalPrefix(s string) int {
	if len(s) < 24 || s[0] < 'A' || s[0] > 'Z' || s[3] != ' ' || s[9] != ':' || s[12] != ':' || s[15] != ' ' {
		return 0
	}
	const tag = " kernel: "
	k := strings.Index(s[15:min(len(s), 15+80)], tag)
	if k < 0 {
		return 0
	}
	return 15 + k + len(tag)
}

// isStamp matches the inside of "[   12.345678]".
func isStamp(s string) bool {
	s = strings.TrimLeft(s, " ")
	dot := strings.IndexByte(s, '.')
	return dot > 0 && dot < len(s)-1 && allDigits(s[:dot]) && allDigits(s[dot+1:])
}

// isCaller matches "T123" and "C1".
func isCaller(s string) bool {
	return len(s) >= 2 && (s[0] == 'T' || s[0] == 'C') && allDigits(s[1:])
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
