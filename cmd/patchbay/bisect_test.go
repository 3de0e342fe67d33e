package main

import (
	"strings"
	"testing"
)

// Bad bisect arguments are refused before anything is built or booted.
func TestBisectArgumentErrors(t *testing.T) {
	const c = "../../harness/testdata/bisect/case.yaml"
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"bisect", c}, "--variant is required"},
		{[]string{"bisect", c, "--variant", "nope"}, "not a variant"},
		{[]string{"bisect", c, "--variant", "stock"}, "no patches to bisect"},
		{[]string{"bisect", c, "--variant", "stack", "--good", "3", "--bad", "2"}, "want 0 <= good < bad <= 4"},
		{[]string{"bisect", c, "--variant", "stack", "--bad", "5"}, "want 0 <= good < bad <= 4"},
		{[]string{"bisect", c, "--variant", "stack", "--p-good", "0.5"}, "failure rates"},
	} {
		out, err := runCLI(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err %v, want %q\n%s", tc.args[2:], err, tc.want, out)
		}
	}
}
