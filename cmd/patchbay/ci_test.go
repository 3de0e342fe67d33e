package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// ciTemplates are the CI templates in ci/ (which has no Go code).
func ciTemplates(t *testing.T) []string {
	t.Helper()
	var files []string
	for _, pat := range []string{"../../ci/*.yml", "../../ci/*.yaml"} {
		m, err := filepath.Glob(pat)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	for _, want := range []string{"github-actions.yml", "gitlab-ci.yml", "k8s-indexed-job.yaml"} {
		if !strings.Contains(strings.Join(files, " "), want) {
			t.Errorf("ci/%s missing (have %v)", want, files)
		}
	}
	return files
}

// yamlDocs parses every document of a YAML file.
func yamlDocs(t *testing.T, path string) []*yaml.Node {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []*yaml.Node
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		docs = append(docs, &n)
	}
	if len(docs) == 0 {
		t.Fatalf("%s: no YAML document", path)
	}
	return docs
}

// scalars returns every scalar value under n (comments are not values).
func scalars(n *yaml.Node) []string {
	if n.Kind == yaml.ScalarNode {
		return []string{n.Value}
	}
	var out []string
	for _, c := range n.Content {
		out = append(out, scalars(c)...)
	}
	return out
}

var (
	patchbayCall = regexp.MustCompile(`(?:^|[\s;&|(])((?:\S*/)?patchbay\s+[a-z]+.*)$`)
	ghExpr       = regexp.MustCompile(`\$\{\{[^}]*\}\}`)
	arith        = regexp.MustCompile(`\$\(\([^)]*\)\)`)
	subst        = regexp.MustCompile(`\$\([^)]*\)`)
	braced       = regexp.MustCompile(`\$\{[^}]*\}`)
	plainVar     = regexp.MustCompile(`\$[A-Za-z_][A-Za-z0-9_]*`)
	shellEnd     = regexp.MustCompile(`\s(\|\||&&|;|\||>>?|2>|#)(\s|$)`)
)

// patchbayArgs finds the patchbay command lines in shell text and returns
// their arguments, shell expansions replaced by plausible values (numbers
// for variables, a path for command substitutions).
func patchbayArgs(script string) [][]string {
	script = strings.ReplaceAll(script, "\\\n", " ")
	var out [][]string
	for _, line := range strings.Split(script, "\n") {
		m := patchbayCall.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		s := ghExpr.ReplaceAllString(m[1], "1")
		s = arith.ReplaceAllString(s, "1")
		s = subst.ReplaceAllString(s, "some/dir")
		s = braced.ReplaceAllString(s, "1")
		s = plainVar.ReplaceAllString(s, "1")
		if loc := shellEnd.FindStringIndex(s); loc != nil {
			s = s[:loc[0]]
		}
		words := shellWords(s)
		out = append(out, words[1:]) // drop the program
	}
	return out
}

// shellWords splits on blanks outside quotes and removes the quotes.
func shellWords(s string) []string {
	var words []string
	var cur strings.Builder
	var quote rune
	in := false
	for _, r := range s {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			cur.WriteRune(r)
		case r == '"' || r == '\'':
			quote, in = r, true
		case r == ' ' || r == '\t':
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	if in {
		words = append(words, cur.String())
	}
	return words
}

func TestPatchbayArgs(t *testing.T) {
	got := patchbayArgs("ci/setup.sh\nexec bin/patchbay run \"$CASE\" --seed \"${SEED}\" \\\n  --shard ${{ matrix.shard }}/4 || status=$?\n" +
		"bin/patchbay merge merged $(find shards -name summary.json -printf '%h\\n' | sort)\n- name: patchbay-merged")
	want := [][]string{{"run", "1", "--seed", "1", "--shard", "1/4"}, {"merge", "merged", "some/dir"}}
	if len(got) != len(want) || strings.Join(got[0], " ") != strings.Join(want[0], " ") || strings.Join(got[1], " ") != strings.Join(want[1], " ") {
		t.Errorf("patchbayArgs = %q, want %q", got, want)
	}
}

// TestCITemplates checks that every template in ci/ is valid YAML and that
// every patchbay command line in it names a real command with real flags
// and a valid number of arguments; each must shard with a fixed seed and
// merge.
func TestCITemplates(t *testing.T) {
	for _, path := range ciTemplates(t) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			docs := yamlDocs(t, path)
			var calls [][]string
			for _, d := range docs {
				for _, s := range scalars(d) {
					calls = append(calls, patchbayArgs(s)...)
				}
			}
			var sharded, merged bool
			for _, args := range calls {
				root := newRootCommand()
				cmd, rest, err := root.Find(args)
				if err != nil || cmd == root {
					t.Errorf("patchbay %s: no such command (%v)", strings.Join(args, " "), err)
					continue
				}
				if err := cmd.ParseFlags(rest); err != nil {
					t.Errorf("patchbay %s: %v", strings.Join(args, " "), err)
					continue
				}
				if err := cmd.ValidateArgs(cmd.Flags().Args()); err != nil {
					t.Errorf("patchbay %s: %v", strings.Join(args, " "), err)
				}
				switch cmd.Name() {
				case "run":
					if cmd.Flags().Changed("shard") {
						sharded = true
						if !cmd.Flags().Changed("seed") {
							t.Errorf("patchbay %s: --shard without --seed", strings.Join(args, " "))
						}
					}
				case "merge":
					merged = true
				}
				t.Logf("ok: patchbay %s", strings.Join(args, " "))
			}
			if !sharded || !merged {
				t.Errorf("want a 'patchbay run --shard' and a 'patchbay merge' (sharded %v, merged %v)", sharded, merged)
			}
		})
	}
}

// get follows mapping keys from a document's root.
func yamlGet(n *yaml.Node, keys ...string) *yaml.Node {
	if n.Kind == yaml.DocumentNode {
		n = n.Content[0]
	}
	for _, k := range keys {
		var next *yaml.Node
		if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == k {
					next = n.Content[i+1]
				}
			}
		}
		if next == nil {
			return nil
		}
		n = next
	}
	return n
}

func yamlValue(n *yaml.Node) string {
	if n == nil {
		return "<missing>"
	}
	return n.Value
}

func TestCITemplateShapes(t *testing.T) {
	gh := yamlDocs(t, "../../ci/github-actions.yml")[0]
	if m := yamlGet(gh, "jobs", "run", "strategy", "matrix", "shard"); m == nil || len(m.Content) != 4 {
		t.Errorf("github: jobs.run.strategy.matrix.shard is not 4 shards: %v", m)
	}
	if v := yamlValue(yamlGet(gh, "jobs", "merge", "needs")); v != "run" {
		t.Errorf("github: merge needs %q", v)
	}
	data, _ := os.ReadFile("../../ci/github-actions.yml")
	for _, want := range []string{"actions/cache/restore@", "actions/cache/save@", "hashFiles('kconfig/**', 'cases/**', 'images/**')", "~/.cache/patchbay",
		"actions/upload-artifact@", "actions/download-artifact@"} {
		if !bytes.Contains(data, []byte(want)) {
			t.Errorf("github: no %s", want)
		}
	}

	gl := yamlDocs(t, "../../ci/gitlab-ci.yml")[0]
	if v := yamlValue(yamlGet(gl, "patchbay-run", "parallel")); v != "4" {
		t.Errorf("gitlab: parallel = %s", v)
	}
	if yamlGet(gl, "patchbay-run", "artifacts", "paths") == nil || yamlValue(yamlGet(gl, "patchbay-merge", "stage")) != "merge" {
		t.Error("gitlab: no artifacts or merge stage")
	}
	data, _ = os.ReadFile("../../ci/gitlab-ci.yml")
	if !bytes.Contains(data, []byte("CI_NODE_INDEX - 1")) || !bytes.Contains(data, []byte("CI_NODE_TOTAL")) {
		t.Error("gitlab: the shard is not CI_NODE_INDEX-1 of CI_NODE_TOTAL")
	}

	var job *yaml.Node
	for _, d := range yamlDocs(t, "../../ci/k8s-indexed-job.yaml") {
		if yamlValue(yamlGet(d, "kind")) == "Job" && yamlValue(yamlGet(d, "spec", "completionMode")) == "Indexed" {
			job = d
		}
	}
	if job == nil {
		t.Fatal("k8s: no Indexed Job")
	}
	if c, p := yamlValue(yamlGet(job, "spec", "completions")), yamlValue(yamlGet(job, "spec", "parallelism")); c != "4" || p != "4" {
		t.Errorf("k8s: completions %s, parallelism %s; want 4 and 4", c, p)
	}
	data, _ = os.ReadFile("../../ci/k8s-indexed-job.yaml")
	if !bytes.Contains(data, []byte(`--shard "$JOB_COMPLETION_INDEX/$SHARDS"`)) {
		t.Error("k8s: the shard is not JOB_COMPLETION_INDEX")
	}
}
