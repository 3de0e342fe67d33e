package kernel

import (
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"
)

// FakeCache lays out a cache with entries of various ages; old ones were
// last used 40 days ago.
func fakeCache(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	old := time.Now().Add(-40 * 24 * time.Hour)
	age := func(p string, when time.Time) {
		if err := os.Chtimes(p, when, when); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range []string{"oldkernel", "newkernel", "busykernel"} {
		writeFile(t, dir, "kernels/"+k+"/info.json", `{"key":"`+k+`","release":"6.12.117","variant":"v","patches":["/x/0001-a.patch"]}`)
		writeFile(t, dir, "kernels/"+k+"/bzImage", "kernel")
		writeFile(t, dir, "kernels/"+k+"/"+lastUsed, "")
		if k != "newkernel" {
			age(filepath.Join(dir, "kernels", k, lastUsed), old)
		}
		writeFile(t, dir, "locks/kernel-"+k, "")
	}
	writeFile(t, dir, "kernels/crashed.tmp/bzImage", "half")
	writeFile(t, dir, "trees/variant-crashed/linux/Makefile", "")
	for tree, src := range map[string]string{"oldtree": "oldsrc", "newtree": "newsrc"} {
		writeFile(t, dir, "trees/"+tree+"/tree.json", `{"source":"debian:x","src_dir":"`+src+`","fragments":["base.config"]}`)
		writeFile(t, dir, "trees/"+tree+"/built", "")
		writeFile(t, dir, "trees/"+tree+"/linux/out/vmlinux", "objects")
		writeFile(t, dir, "trees/"+tree+"/"+lastUsed, "")
		writeFile(t, dir, "src/"+src+"/Makefile", "")
		age(filepath.Join(dir, "src", src), old)
	}
	age(filepath.Join(dir, "trees/oldtree", lastUsed), old)
	writeFile(t, dir, "locks/kernel-ghost", "") // a failed build's, from before they removed theirs
	writeFile(t, dir, "logs/v-old.log", "error")
	age(filepath.Join(dir, "logs/v-old.log"), old)
	return dir
}

func keys(es []CacheEntry) []string {
	var k []string
	for _, e := range es {
		k = append(k, e.Kind+":"+e.Key)
	}
	slices.Sort(k)
	return k
}

func TestPruneRemovesOldAndSkipsLocked(t *testing.T) {
	dir := fakeCache(t)
	unlock, ok, err := tryLock(filepath.Join(dir, "locks/kernel-busykernel"), syscall.LOCK_SH)
	if err != nil || !ok {
		t.Fatal(err)
	}
	defer unlock()

	info, err := InspectCache(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Kernels) != 3 || len(info.Trees) != 2 || len(info.Sources) != 2 || len(info.Leftovers) != 2 {
		t.Fatalf("inspect: %v %v %v %v", keys(info.Kernels), keys(info.Trees), keys(info.Sources), keys(info.Leftovers))
	}
	for _, k := range info.Kernels {
		if k.InUse != (k.Key == "busykernel") {
			t.Errorf("%s in use = %v", k.Key, k.InUse)
		}
		if k.Release != "6.12.117" || len(k.Patches) != 1 || k.Patches[0] != "0001-a.patch" {
			t.Errorf("kernel entry %+v", k)
		}
	}

	dry, err := Prune(dir, 720*time.Hour, false, true)
	if err != nil {
		t.Fatal(err)
	}
	if !exists(filepath.Join(dir, "kernels/oldkernel")) {
		t.Fatal("a dry run removed something")
	}
	res, err := Prune(dir, 720*time.Hour, false, false)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"kernel:oldkernel", "leftover:kernels/crashed.tmp", "leftover:trees/variant-crashed", "log:v-old.log", "src:oldsrc", "tree:oldtree"}
	if got := keys(res.Removed); !slices.Equal(got, want) {
		t.Errorf("removed %v, want %v", got, want)
	}
	if got := keys(dry.Removed); !slices.Equal(got, want) {
		t.Errorf("dry run would remove %v, want %v", got, want)
	}
	if got := keys(res.Skipped); !slices.Equal(got, []string{"kernel:busykernel"}) {
		t.Errorf("skipped %v", got)
	}
	for _, gone := range []string{"kernels/oldkernel", "locks/kernel-oldkernel", "locks/kernel-ghost", "trees/oldtree", "src/oldsrc", "kernels/crashed.tmp"} {
		if exists(filepath.Join(dir, gone)) {
			t.Errorf("%s still there", gone)
		}
	}
	// newsrc is old, but newtree links to it.
	for _, kept := range []string{"kernels/newkernel", "kernels/busykernel", "trees/newtree", "src/newsrc"} {
		if !exists(filepath.Join(dir, kept)) {
			t.Errorf("%s removed", kept)
		}
	}
}

func TestPruneKeepTreesAndHeldTreeLock(t *testing.T) {
	dir := fakeCache(t)
	res, err := Prune(dir, 720*time.Hour, true, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range res.Removed {
		if e.Kind == "tree" || e.Kind == "src" {
			t.Errorf("--keep-trees removed %s %s", e.Kind, e.Key)
		}
	}
	// A variant building from a tree holds its lock shared: prune skips it.
	unlock, ok, err := tryLock(filepath.Join(dir, "locks/tree-oldtree"), syscall.LOCK_SH)
	if err != nil || !ok {
		t.Fatal(err)
	}
	defer unlock()
	res, err = Prune(dir, 720*time.Hour, false, false)
	if err != nil {
		t.Fatal(err)
	}
	if got := keys(res.Skipped); !slices.Equal(got, []string{"kernel:busykernel", "tree:oldtree"}) && !slices.Equal(got, []string{"tree:oldtree"}) {
		t.Errorf("skipped %v", got)
	}
	if !exists(filepath.Join(dir, "trees/oldtree")) || !exists(filepath.Join(dir, "src/oldsrc")) {
		t.Error("removed a tree whose lock is held, or the source it links to")
	}
}

// TestPruneSnapshots: snapshots show up with their kernel's release; prune
// removes an old one, a recent one whose kernel is pruned with it, a
// crashed save's leftover, and keeps a recent one of a kept kernel and one
// whose maker holds its lock.
func TestPruneSnapshots(t *testing.T) {
	dir := fakeCache(t)
	old := time.Now().Add(-40 * 24 * time.Hour)
	snap := func(key, kernel string, when time.Time) {
		writeFile(t, dir, "snapshots/"+key+"/state", "state")
		writeFile(t, dir, "snapshots/"+key+"/meta.json", `{"key":"`+key+`","kernel_key":"`+kernel+`","shape":"mem=1024"}`)
		writeFile(t, dir, "snapshots/"+key+".lock", "")
		if err := os.Chtimes(filepath.Join(dir, "snapshots", key, "meta.json"), when, when); err != nil {
			t.Fatal(err)
		}
	}
	snap("oldsnap", "newkernel", old)
	snap("orphansnap", "oldkernel", time.Now())
	snap("keptsnap", "newkernel", time.Now())
	snap("savingsnap", "gonekernel", old)
	writeFile(t, dir, "snapshots/crashedsave.tmp/state", "half")
	unlock, ok, err := tryLock(filepath.Join(dir, "snapshots/savingsnap.lock"), syscall.LOCK_EX)
	if err != nil || !ok {
		t.Fatal(err)
	}
	defer unlock()

	info, err := InspectCache(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := keys(info.Snapshots); !slices.Equal(got, []string{"snapshot:keptsnap", "snapshot:oldsnap", "snapshot:orphansnap", "snapshot:savingsnap"}) {
		t.Fatalf("snapshots %v", got)
	}
	for _, sn := range info.Snapshots {
		if sn.Key == "keptsnap" && (sn.Release != "6.12.117" || sn.KernelKey != "newkernel" || sn.InUse) {
			t.Errorf("snapshot entry %+v", sn)
		}
		if sn.Key == "savingsnap" && !sn.InUse {
			t.Errorf("savingsnap's lock is held, entry says not in use")
		}
	}
	res, err := Prune(dir, 720*time.Hour, true, false)
	if err != nil {
		t.Fatal(err)
	}
	removed := keys(res.Removed)
	for _, want := range []string{"snapshot:oldsnap", "snapshot:orphansnap", "leftover:snapshots/crashedsave.tmp"} {
		if !slices.Contains(removed, want) {
			t.Errorf("removed %v, want %s among them", removed, want)
		}
	}
	if !slices.Contains(keys(res.Skipped), "snapshot:savingsnap") {
		t.Errorf("skipped %v, want snapshot:savingsnap", keys(res.Skipped))
	}
	for _, gone := range []string{"snapshots/oldsnap", "snapshots/oldsnap.lock", "snapshots/orphansnap", "snapshots/crashedsave.tmp"} {
		if exists(filepath.Join(dir, gone)) {
			t.Errorf("%s still there", gone)
		}
	}
	for _, kept := range []string{"snapshots/keptsnap", "snapshots/savingsnap"} {
		if !exists(filepath.Join(dir, kept)) {
			t.Errorf("%s removed", kept)
		}
	}
}
