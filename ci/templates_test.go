// Package ci holds the CI templates (YAML) and the tests that check them
// offline: the GitHub workflow with actionlint (and shellcheck on its run
// scripts when installed), every Kubernetes object strictly decoded into its
// k8s.io/api type, and the GitLab file against the rules of its keywords
// that can be checked without a GitLab server. That the patchbay command
// lines in them are valid is checked in cmd/patchbay (TestCITemplates).
package ci

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/rhysd/actionlint"
	yamlv3 "gopkg.in/yaml.v3"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// lintWorkflow runs actionlint on one workflow and returns its findings.
func lintWorkflow(t *testing.T, path string, content []byte) []*actionlint.Error {
	t.Helper()
	opts := &actionlint.LinterOptions{}
	if sc, err := exec.LookPath("shellcheck"); err == nil {
		opts.Shellcheck = sc
	} else {
		t.Logf("shellcheck not installed: run scripts are not linted (ci/setup.sh installs it)")
	}
	l, err := actionlint.NewLinter(io.Discard, opts)
	if err != nil {
		t.Fatal(err)
	}
	errs, err := l.Lint(path, content, nil)
	if err != nil {
		t.Fatalf("actionlint %s: %v", path, err)
	}
	return errs
}

func TestGitHubWorkflowLints(t *testing.T) {
	const path = "github-actions.yml"
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range lintWorkflow(t, path, data) {
		t.Errorf("%s:%d:%d: %s [%s]", path, e.Line, e.Column, e.Message, e.Kind)
	}
}

// TestActionlintCatches shows the lint above can fail: a workflow with an
// undefined job in needs and an unknown key.
func TestActionlintCatches(t *testing.T) {
	bad := []byte("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    needs: nosuchjob\n    stepz: []\n")
	if errs := lintWorkflow(t, "bad.yml", bad); len(errs) < 2 {
		t.Errorf("actionlint found %d problems in a broken workflow, want >= 2", len(errs))
	}
}

// TestGitHubBuildsOnce: one job builds kernels and image and saves the
// cache; every shard needs it and restores exactly that cache.
func TestGitHubBuildsOnce(t *testing.T) {
	var wf struct {
		Jobs map[string]struct {
			Needs any `yaml:"needs"`
			Steps []struct {
				Uses string            `yaml:"uses"`
				Run  string            `yaml:"run"`
				With map[string]any    `yaml:"with"`
				Env  map[string]string `yaml:"env"`
			} `yaml:"steps"`
		} `yaml:"jobs"`
	}
	decodeYAMLFile(t, "github-actions.yml", &wf)
	build, ok := wf.Jobs["build"]
	if !ok {
		t.Fatal("no build job")
	}
	var saveKey string
	built := false
	for _, s := range build.Steps {
		if strings.HasPrefix(s.Uses, "actions/cache/save@") {
			saveKey = fmt.Sprint(s.With["key"])
		}
		if strings.Contains(s.Run, "patchbay build") && strings.Contains(s.Run, "--image") {
			built = true
		}
	}
	if saveKey == "" || !built {
		t.Fatalf("build job: cache save key %q, builds kernels and image %v", saveKey, built)
	}
	run := wf.Jobs["run"]
	if fmt.Sprint(run.Needs) != "build" {
		t.Errorf("run job needs %v, want build", run.Needs)
	}
	restored := false
	for _, s := range run.Steps {
		if strings.HasPrefix(s.Uses, "actions/cache/restore@") {
			restored = fmt.Sprint(s.With["key"]) == saveKey && fmt.Sprint(s.With["fail-on-cache-miss"]) == "true"
		}
		if strings.Contains(s.Run, "patchbay build") {
			t.Errorf("a shard builds: %q", s.Run)
		}
	}
	if !restored {
		t.Errorf("shards do not restore exactly the build job's cache %q (with fail-on-cache-miss)", saveKey)
	}
}

func decodeYAMLFile(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yamlv3.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// k8sDocs splits a multi-document manifest and decodes each object into its
// k8s.io/api type, refusing unknown fields (a misspelt or misplaced key
// would be silently dropped by kubectl apply on older servers).
func k8sDocs(data []byte) ([]any, error) {
	dec := yamlv3.NewDecoder(bytes.NewReader(data))
	var objs []any
	for i := 0; ; i++ {
		var node yamlv3.Node
		err := dec.Decode(&node)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		raw, err := yamlv3.Marshal(&node)
		if err != nil {
			return nil, err
		}
		js, err := yaml.YAMLToJSONStrict(raw)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		var meta struct{ APIVersion, Kind string }
		if err := json.Unmarshal(js, &meta); err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		var obj any
		switch meta.APIVersion + "/" + meta.Kind {
		case "batch/v1/Job":
			obj = &batchv1.Job{}
		case "v1/PersistentVolumeClaim":
			obj = &corev1.PersistentVolumeClaim{}
		default:
			return nil, fmt.Errorf("document %d: unexpected %s %s", i, meta.APIVersion, meta.Kind)
		}
		jd := json.NewDecoder(bytes.NewReader(js))
		jd.DisallowUnknownFields()
		if err := jd.Decode(obj); err != nil {
			return nil, fmt.Errorf("document %d (%s): %w", i, meta.Kind, err)
		}
		objs = append(objs, obj)
	}
	return objs, nil
}

func TestK8sStrict(t *testing.T) {
	data, err := os.ReadFile("k8s-indexed-job.yaml")
	if err != nil {
		t.Fatal(err)
	}
	objs, err := k8sDocs(data)
	if err != nil {
		t.Fatalf("k8s-indexed-job.yaml: %v", err)
	}
	claims := map[string]bool{}
	var jobs []*batchv1.Job
	for _, o := range objs {
		switch o := o.(type) {
		case *corev1.PersistentVolumeClaim:
			claims[o.Name] = true
		case *batchv1.Job:
			jobs = append(jobs, o)
		}
	}
	var build, indexed *batchv1.Job
	for _, j := range jobs {
		// Every claim a pod mounts is defined in the file.
		for _, v := range j.Spec.Template.Spec.Volumes {
			if v.PersistentVolumeClaim != nil && !claims[v.PersistentVolumeClaim.ClaimName] {
				t.Errorf("job %s: volume %s claims %q, not defined here", j.Name, v.Name, v.PersistentVolumeClaim.ClaimName)
			}
		}
		// Every mount names a volume of the pod.
		vols := map[string]bool{}
		for _, v := range j.Spec.Template.Spec.Volumes {
			vols[v.Name] = true
		}
		for _, c := range slices.Concat(j.Spec.Template.Spec.InitContainers, j.Spec.Template.Spec.Containers) {
			for _, m := range c.VolumeMounts {
				if !vols[m.Name] {
					t.Errorf("job %s container %s mounts %q: no such volume", j.Name, c.Name, m.Name)
				}
			}
		}
		if j.Spec.CompletionMode != nil && *j.Spec.CompletionMode == batchv1.IndexedCompletion {
			indexed = j
		} else if strings.HasSuffix(j.Name, "-build") {
			build = j
		}
	}
	if build == nil || indexed == nil {
		t.Fatalf("want a build Job and an Indexed Job (have %d jobs)", len(jobs))
	}
	script := strings.Join(build.Spec.Template.Spec.Containers[0].Command, " ")
	if !strings.Contains(script, "patchbay build") || !strings.Contains(script, "--image") {
		t.Errorf("build Job does not build kernels and image: %q", script)
	}
	// The podFailurePolicy names a container of the pod.
	if p := indexed.Spec.PodFailurePolicy; p != nil {
		for _, r := range p.Rules {
			if r.OnExitCodes != nil && r.OnExitCodes.ContainerName != nil {
				name := *r.OnExitCodes.ContainerName
				if !slices.ContainsFunc(indexed.Spec.Template.Spec.Containers, func(c corev1.Container) bool { return c.Name == name }) {
					t.Errorf("podFailurePolicy names container %q, not in the pod", name)
				}
			}
		}
	}
}

// TestK8sStrictCatches shows the strict decoding fails on a misplaced key.
func TestK8sStrictCatches(t *testing.T) {
	bad := []byte("apiVersion: batch/v1\nkind: Job\nmetadata: {name: x}\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: a, image: b, comand: [c]}]\n")
	if _, err := k8sDocs(bad); err == nil || !strings.Contains(err.Error(), "comand") {
		t.Errorf("misspelt field accepted: %v", err)
	}
}

// gitlabJobKeys are the job keywords of .gitlab-ci.yml (GitLab 17).
var gitlabJobKeys = []string{"after_script", "allow_failure", "artifacts", "before_script", "cache", "coverage",
	"dast_configuration", "dependencies", "environment", "extends", "hooks", "id_tokens", "identity", "image",
	"inherit", "interruptible", "manual_confirmation", "needs", "pages", "parallel", "release", "resource_group",
	"retry", "rules", "run", "script", "secrets", "services", "stage", "tags", "timeout", "trigger", "variables", "when"}

var gitlabTopKeys = []string{"default", "include", "stages", "variables", "workflow", "spec"}

var gitlabDuration = regexp.MustCompile(`^(\d+\s*(h|m|s|hours?|minutes?|seconds?)\s*)+$`)

// checkGitLab checks a .gitlab-ci.yml against the rules of its keywords
// that need no server: known keys, declared stages, needs naming jobs of
// earlier stages, parallel in 1..200, cache policy and when values,
// timeouts, non-empty scripts.
func checkGitLab(data []byte) []string {
	var doc map[string]any // yaml.v3 expands anchors and << merges
	if err := yamlv3.Unmarshal(data, &doc); err != nil {
		return []string{err.Error()}
	}
	var probs []string
	bad := func(format string, args ...any) { probs = append(probs, fmt.Sprintf(format, args...)) }
	stages := []string{".pre", "build", "test", "deploy", ".post"}
	if s, ok := doc["stages"].([]any); ok {
		stages = []string{".pre"}
		for _, v := range s {
			stages = append(stages, fmt.Sprint(v))
		}
		stages = append(stages, ".post")
	}
	jobs := map[string]map[string]any{}
	for k, v := range doc {
		if slices.Contains(gitlabTopKeys, k) || strings.HasPrefix(k, ".") {
			continue
		}
		m, ok := v.(map[string]any)
		if !ok {
			bad("%s: not a job (a mapping) nor a top-level keyword", k)
			continue
		}
		jobs[k] = m
	}
	for name, job := range jobs {
		for k := range job {
			if !slices.Contains(gitlabJobKeys, k) {
				bad("%s: unknown keyword %q", name, k)
			}
		}
		stage := "test"
		if s, ok := job["stage"]; ok {
			stage = fmt.Sprint(s)
		}
		si := slices.Index(stages, stage)
		if si < 0 {
			bad("%s: stage %q not in stages %v", name, stage, stages)
		}
		script, _ := job["script"].([]any)
		if len(script) == 0 && job["trigger"] == nil {
			bad("%s: no script", name)
		}
		for _, l := range script {
			if _, ok := l.(string); !ok {
				bad("%s: script line %v is not a string (quote it)", name, l)
			}
		}
		if p, ok := job["parallel"]; ok {
			if n, ok := p.(int); !ok || n < 1 || n > 200 {
				bad("%s: parallel %v not an integer in 1..200", name, p)
			}
		}
		if w, ok := job["when"]; ok && !slices.Contains([]string{"on_success", "on_failure", "never", "always", "manual", "delayed"}, fmt.Sprint(w)) {
			bad("%s: when %v", name, w)
		}
		if d, ok := job["timeout"]; ok && !gitlabDuration.MatchString(fmt.Sprint(d)) {
			bad("%s: timeout %q is not a duration", name, d)
		}
		if c, ok := job["cache"].(map[string]any); ok {
			if p, ok := c["policy"]; ok && !slices.Contains([]string{"pull", "push", "pull-push"}, fmt.Sprint(p)) {
				bad("%s: cache policy %v", name, p)
			}
			if k, ok := c["key"].(map[string]any); ok {
				if files, _ := k["files"].([]any); len(files) > 2 {
					bad("%s: cache:key:files takes at most two files, has %d", name, len(files))
				}
			}
		}
		needs, _ := job["needs"].([]any)
		for _, n := range needs {
			dep := fmt.Sprint(n)
			if m, ok := n.(map[string]any); ok {
				dep = fmt.Sprint(m["job"])
			}
			d, ok := jobs[dep]
			if !ok {
				bad("%s: needs %q, no such job", name, dep)
				continue
			}
			ds := "test"
			if s, ok := d["stage"]; ok {
				ds = fmt.Sprint(s)
			}
			if slices.Index(stages, ds) > si {
				bad("%s: needs %q of a later stage %q", name, dep, ds)
			}
		}
	}
	slices.Sort(probs)
	return probs
}

func TestGitLabRules(t *testing.T) {
	data, err := os.ReadFile("gitlab-ci.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range checkGitLab(data) {
		t.Errorf("gitlab-ci.yml: %s", p)
	}
	var doc map[string]any
	if err := yamlv3.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	job := func(name string) map[string]any { m, _ := doc[name].(map[string]any); return m }
	// Built once: the build job pushes the cache, the shards only pull it.
	policy := func(name string) string {
		c, _ := job(name)["cache"].(map[string]any)
		return fmt.Sprint(c["policy"])
	}
	if policy("patchbay-build") != "pull-push" || policy("patchbay-run") != "pull" {
		t.Errorf("cache policies: build %s, run %s; want pull-push and pull", policy("patchbay-build"), policy("patchbay-run"))
	}
	script, _ := job("patchbay-run")["script"].([]any)
	for _, l := range script {
		if strings.Contains(fmt.Sprint(l), "patchbay build") {
			t.Errorf("a shard builds: %v", l)
		}
	}
}

func TestGitLabRulesCatch(t *testing.T) {
	bad := []byte("stages: [a]\nj:\n  stage: b\n  scriptt: [x]\n  parallel: 500\n  needs: [k]\n  timeout: soon\n")
	got := checkGitLab(bad)
	for _, want := range []string{"unknown keyword \"scriptt\"", "stage \"b\"", "no script", "parallel 500", "needs \"k\"", "timeout \"soon\""} {
		if !slices.ContainsFunc(got, func(p string) bool { return strings.Contains(p, want) }) {
			t.Errorf("no problem %q in %q", want, got)
		}
	}
}
