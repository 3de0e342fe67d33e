package kernel

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestGitSourceIsKeyedByCommitAndExtractsIt(t *testing.T) {
	ctx := context.Background()
	repo := fakeKernel(t).Name
	gitIn(t, repo, "tag", "v1")
	commit := gitIn(t, repo, "rev-parse", "HEAD")
	// Later work, committed and not: the tag still names v1's content.
	writeFile(t, repo, "src/a.c", "int changed;\n")
	gitIn(t, repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "later")
	writeFile(t, repo, "src/b.c", "int dirty;\n")

	src, err := ParseSource("git:" + repo + "@v1")
	if err != nil {
		t.Fatal(err)
	}
	pinned, id, err := src.resolve(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if id != "git:"+commit || pinned.Ref != commit {
		t.Fatalf("identity %q, pinned %q; want the commit %s", id, pinned.Ref, commit)
	}
	// The same commit in another clone is the same source.
	clone := filepath.Join(t.TempDir(), "clone")
	if out, err := exec.Command("git", "clone", "-q", repo, clone).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	if _, id2, err := (Source{Kind: "git", Name: clone, Ref: commit}).resolve(ctx); err != nil || id2 != id {
		t.Errorf("clone identity %q, %v; want %q", id2, err, id)
	}
	dst := filepath.Join(t.TempDir(), "src")
	if err := pinned.unpack(ctx, dst, &stepLog{}); err != nil {
		t.Fatal(err)
	}
	if a, _ := os.ReadFile(filepath.Join(dst, "src/a.c")); !strings.HasPrefix(string(a), "int a;") {
		t.Errorf("unpacked a.c = %q, want v1's", a)
	}
	if _, err := os.Stat(filepath.Join(dst, ".git")); err == nil {
		t.Error("unpacked .git")
	}
	for ref, want := range map[string]string{"nope": `no commit "nope"`} {
		if _, _, err := (Source{Kind: "git", Name: repo, Ref: ref}).resolve(ctx); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ref %s: %v", ref, err)
		}
	}
	if _, _, err := (Source{Kind: "git", Name: t.TempDir(), Ref: "HEAD"}).resolve(ctx); err == nil || !strings.Contains(err.Error(), "not a git repository") {
		t.Errorf("not a repo: %v", err)
	}
}

func TestDirSourceKeysUntrackedFiles(t *testing.T) {
	ctx := context.Background()
	src := fakeKernel(t)
	writeFile(t, src.Name, ".gitignore", "*.o\n")
	gitIn(t, src.Name, "add", ".gitignore")
	gitIn(t, src.Name, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "ignore")
	id := func() string {
		t.Helper()
		_, id, err := src.resolve(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	clean := id()
	writeFile(t, src.Name, "src/new.c", "int n;\n")
	untracked := id()
	if untracked == clean {
		t.Fatal("an untracked file does not change the identity")
	}
	writeFile(t, src.Name, "src/new.c", "int m;\n")
	if id() == untracked {
		t.Fatal("the content of an untracked file does not change the identity")
	}
	writeFile(t, src.Name, "src/a.o", "object")
	withIgnored := id()
	writeFile(t, src.Name, "src/a.o", "other object")
	if id() != withIgnored {
		t.Fatal("an ignored file changes the identity")
	}
	// The copy holds exactly what the identity covers.
	dst := filepath.Join(t.TempDir(), "src")
	if err := src.unpack(ctx, dst, &stepLog{}); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(dst, "src/new.c")); string(got) != "int m;\n" {
		t.Errorf("untracked file not copied: %q", got)
	}
	for _, name := range []string{"src/a.o", ".git"} {
		if _, err := os.Stat(filepath.Join(dst, name)); err == nil {
			t.Errorf("%s copied", name)
		}
	}
}
