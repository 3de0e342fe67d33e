package kernel

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A series kept as a branch: git:REPO@BASE..TIP expands to its commits, in
// order, each applies on the base, and #N picks one.
func TestGitRangePatches(t *testing.T) {
	repo := fakeKernel(t).Name
	gitIn(t, repo, "tag", "base")
	commit := func(file, body, subject string) {
		writeFile(t, repo, file, body)
		gitIn(t, repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", subject)
	}
	commit("src/a.c", "int a;\nint a2 = 2;\nint a3;\n", "src: a2 is two")
	commit("src/b.c", "int b;\nint b2;\nint b3 = 3;\n", "src: b3 is three")
	commit("src/a.c", "int a = 1;\nint a2 = 2;\nint a3;\n", "src: a is one")
	gitIn(t, repo, "branch", "series")

	ps, err := ExpandPatches([]string{"git:" + repo + "@base..series"})
	if err != nil {
		t.Fatal(err)
	}
	var subjects []string
	for _, p := range ps {
		subjects = append(subjects, p.Subject)
	}
	if got := strings.Join(subjects, " | "); !strings.Contains(got, "a2 is two") || !strings.Contains(subjects[2], "a is one") || len(ps) != 3 {
		t.Fatalf("subjects %q: want the 3 commits in order", got)
	}
	if strings.Contains(string(ps[2].Data), "\n-- \n") {
		t.Errorf("patch carries git's version signature, which would change the key with git")
	}
	// Refs re-expand to the same patch: what a Spec stores.
	one, err := ExpandPatches([]string{ps[1].Ref()})
	if err != nil || len(one) != 1 || one[0].Subject != ps[1].Subject {
		t.Fatalf("%s: %v %v", ps[1].Ref(), one, err)
	}
	// They apply, in order, on the base's tree.
	tree := t.TempDir()
	gitIn(t, repo, "worktree", "add", "-q", tree, "base")
	for _, p := range ps {
		if err := applyPatch(context.Background(), tree, p, func(string) error { return nil }); err != nil {
			t.Fatalf("apply %s: %v", p.Subject, err)
		}
	}
	if a, _ := os.ReadFile(filepath.Join(tree, "src/a.c")); string(a) != "int a = 1;\nint a2 = 2;\nint a3;\n" {
		t.Errorf("a.c after the series = %q", a)
	}

	for ref, want := range map[string]string{
		"git:" + repo + "@series":           "want git:REPO@BASE..TIP",
		"git:" + repo + "@series..series":   "has no commits",
		"git:" + repo + "@base..nope":       `range end: no commit "nope"`,
		"git:" + repo + "@base..series#4":   "holds 3 patch(es), there is no #4",
		"git:" + t.TempDir() + "@base..tip": `range start: no commit "base"`,
	} {
		if _, err := ExpandPatches([]string{ref}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want %q", ref, err, want)
		}
	}
}
