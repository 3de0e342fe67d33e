package report

import (
	"encoding/json"
	"fmt"
	"regexp"
	"testing"

	"patchbay/record"
)

// Property names KCIDB v4.2 allows per object (it sets
// additionalProperties: false) and the ones it requires.
var (
	kcidbAllowed = map[string][]string{
		"checkouts": {"id", "origin", "tree_name", "git_repository_url", "git_commit_hash", "git_commit_name",
			"git_repository_branch", "patchset_files", "patchset_hash", "message_id", "comment", "start_time",
			"contacts", "log_url", "log_excerpt", "valid", "misc"},
		"builds": {"checkout_id", "id", "origin", "comment", "start_time", "duration", "architecture", "command",
			"compiler", "input_files", "output_files", "config_name", "config_url", "log_url", "log_excerpt", "valid", "misc"},
		"tests": {"build_id", "id", "origin", "environment", "path", "comment", "log_url", "log_excerpt", "status",
			"waived", "start_time", "duration", "output_files", "misc"},
	}
	kcidbRequired = map[string][]string{
		"checkouts": {"id", "origin"},
		"builds":    {"checkout_id", "id", "origin"},
		"tests":     {"build_id", "id", "origin"},
	}
	originID = regexp.MustCompile(`^[a-z0-9_]+:.*$`)
	testPath = regexp.MustCompile(`^[.a-zA-Z0-9_-]*$`)
)

func TestKCIDBSchema(t *testing.T) {
	data, err := KCIDB(richSample())
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	noNulls(t, "kcidb", doc)
	ver, _ := doc["version"].(map[string]any)
	if ver["major"] != 4.0 || ver["minor"] != 2.0 {
		t.Errorf("version %v, want 4.2", ver)
	}
	objs := map[string][]map[string]any{}
	for kind := range kcidbAllowed {
		list, ok := doc[kind].([]any)
		if !ok {
			t.Fatalf("%s missing or not a list", kind)
		}
		allowed := map[string]bool{}
		for _, k := range kcidbAllowed[kind] {
			allowed[k] = true
		}
		for i, o := range list {
			obj := o.(map[string]any)
			for k := range obj {
				if !allowed[k] {
					t.Errorf("%s[%d]: property %q is not in KCIDB v4", kind, i, k)
				}
			}
			for _, k := range kcidbRequired[kind] {
				if _, ok := obj[k]; !ok {
					t.Errorf("%s[%d]: required %q missing", kind, i, k)
				}
			}
			for _, k := range []string{"id", "checkout_id", "build_id"} {
				if v, ok := obj[k]; ok && !originID.MatchString(v.(string)) {
					t.Errorf("%s[%d].%s = %q is not origin:...", kind, i, k, v)
				}
			}
			if obj["origin"] != "patchbay" {
				t.Errorf("%s[%d].origin = %v", kind, i, obj["origin"])
			}
			objs[kind] = append(objs[kind], obj)
		}
	}

	if len(objs["checkouts"]) != 1 || objs["checkouts"][0]["id"] != "patchbay:ext4-journal-defrag:20261128-103803" {
		t.Errorf("checkouts: %v", objs["checkouts"])
	}
	builds := objs["builds"]
	if len(builds) != 3 {
		t.Fatalf("%d builds, want one per variant", len(builds))
	}
	for i, w := range []struct {
		valid  bool
		status string
	}{{true, "PASS"}, {true, "PASS"}, {false, "FAIL"}} {
		b := builds[i]
		misc, _ := b["misc"].(map[string]any)
		if b["valid"] != w.valid || misc["status"] != w.status || b["architecture"] != "x86_64" || b["config_name"] != "tinyconfig+ext4-journal-defrag" {
			t.Errorf("build %d: %v", i, b)
		}
		if b["checkout_id"] != objs["checkouts"][0]["id"] {
			t.Errorf("build %d does not point at the checkout", i)
		}
	}
	if builds[0]["compiler"] != "gcc (Debian 12.2.0-14+deb12u1) 12.2.0" || builds[2]["log_excerpt"] == nil {
		t.Errorf("compiler / build log excerpt: %v / %v", builds[0]["compiler"], builds[2]["log_excerpt"])
	}

	tests := objs["tests"]
	wantStatus := []string{"PASS", "PASS", "PASS", "FAIL", "FAIL", "FAIL", "PASS", "MISS", "SKIP", "ERROR"}
	if len(tests) != len(wantStatus) {
		t.Fatalf("%d tests, want one per run (%d)", len(tests), len(wantStatus))
	}
	ids := map[string]bool{}
	for i, tc := range tests {
		if tc["status"] != wantStatus[i] {
			t.Errorf("test %d status %v, want %s", i, tc["status"], wantStatus[i])
		}
		p, _ := tc["path"].(string)
		if !testPath.MatchString(p) {
			t.Errorf("test %d path %q does not match the schema", i, p)
		}
		misc, _ := tc["misc"].(map[string]any)
		if misc["seed"] == nil || misc["reasons"] == nil || misc["outcome"] == nil {
			t.Errorf("test %d misc lacks seed/reasons/outcome: %v", i, misc)
		}
		ids[tc["id"].(string)] = true
	}
	if len(ids) != len(tests) {
		t.Error("test ids are not unique")
	}
	if tests[3]["path"] != "ext4.ext4-journal-defrag.fallback" || tests[3]["build_id"] != builds[1]["id"] {
		t.Errorf("fallback test: %v", tests[3])
	}
	if misc := tests[4]["misc"].(map[string]any); fmt.Sprint(misc["seed"]) != "101" || len(misc["reasons"].([]any)) != 2 {
		t.Errorf("fail test misc: %v", misc)
	}
}

func TestKCIDBStatusCoversEveryOutcome(t *testing.T) {
	valid := map[string]bool{"FAIL": true, "ERROR": true, "MISS": true, "PASS": true, "DONE": true, "SKIP": true}
	for _, o := range record.Outcomes {
		if s := KCIDBStatus(o); !valid[s] {
			t.Errorf("%s -> %q", o, s)
		}
	}
}

func TestTruncateKeepsRunes(t *testing.T) {
	if got := truncate("aé", 2); got != "a" {
		t.Errorf("truncate cut a rune: %q", got)
	}
	if got := truncate("abc", 5); got != "abc" {
		t.Errorf("truncate changed a short string: %q", got)
	}
}

// noNulls fails on any JSON null: KCIDB allows a property to be missing
// but never null.
func noNulls(t *testing.T, path string, v any) {
	t.Helper()
	switch x := v.(type) {
	case nil:
		t.Errorf("%s is null", path)
	case map[string]any:
		for k, e := range x {
			noNulls(t, path+"."+k, e)
		}
	case []any:
		for i, e := range x {
			noNulls(t, fmt.Sprintf("%s[%d]", path, i), e)
		}
	}
}
