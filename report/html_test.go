package report

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestHTMLEscapesLinksAndBars(t *testing.T) {
	data, err := HTML(richSample(), "")
	if err != nil {
		t.Fatal(err)
	}
	page := string(data)
	for _, want := range []string{
		// The nasty title, escaped, in the table, in a run and in its report.
		`ext4_&lt;mext&gt;&amp;&#34;x&#34; (1/7 runs)<span class="new">NEW</span>`,
		`<summary>BUG: KASAN: slab-out-of-bounds in ext4_&lt;mext&gt;&amp;&#34;x&#34;<span class="new">NEW</span>`,
		`Read of size 8 at addr &lt;ffff8880&gt;`,
		`hunk #1 FAILED at 640 &lt;move_extent.c&gt;`,
		// Relative links to every run's logs.
		`<a href="fallback/0/console.log">console.log</a>`,
		`<a href="eopnotsupp/2/dmesg.txt">dmesg.txt</a>`,
		`<a href="fallback/6/qemu.log">qemu.log</a>`,
		// Outcome bars: 3/3 pass for the baseline, 1/7 of each for fallback.
		`<span class="seg o-pass" style="width: 100.00%" title="pass 3">3</span>`,
		`<span class="seg o-crash" style="width: 14.29%" title="crash 1">1</span>`,
		`<span class="seg o-interrupted" style="width: 14.29%" title="interrupted 1">1</span>`,
		`kernel build failed</span></div>`,
		// The same rows as the Markdown table.
		`<th>failure rate (95% CI)</th><td>0% [0-56%] (0/3)</td><td>80% [38-96%] (4/5)</td><td>-</td>`,
		`<th>eopnotsupp (baseline)</th>`,
		`<details><summary>WARNING in ext4_move_extents<span class="new">NEW</span>`,
		`<pre>------------[ cut here ]------------`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("report.html lacks %s", want)
		}
	}
	// A title the baseline also had is not NEW.
	if strings.Contains(page, ext4Warn+` (1/7 runs)<span class="new">`) {
		t.Error("a title seen in the baseline is marked NEW")
	}
	for _, bad := range []string{"<mext>", "<script", "http://", "https://", "src="} {
		if strings.Contains(page, bad) {
			t.Errorf("report.html contains %q", bad)
		}
	}
	for _, row := range tableRows(richSample()) {
		if !strings.Contains(page, "<th>"+row.name+"</th>") {
			t.Errorf("report.html lacks the row %q", row.name)
		}
	}
	if n := len(regexp.MustCompile(`<div class="run" id=`).FindAllString(page, -1)); n != 10 {
		t.Errorf("%d run blocks, want 10", n)
	}
}

func TestHTMLLinksTheFilesARunHas(t *testing.T) {
	dir := t.TempDir()
	run := filepath.Join(dir, "fallback", "0")
	if err := os.MkdirAll(run, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"console.log", "setup.txt", "qemu.log", "x.tmp"} {
		if err := os.WriteFile(filepath.Join(run, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	data, err := HTML(richSample(), dir)
	if err != nil {
		t.Fatal(err)
	}
	page := string(data)
	want := `logs: <a href="fallback/0/console.log">console.log</a><a href="fallback/0/qemu.log">qemu.log</a><a href="fallback/0/setup.txt">setup.txt</a></div>`
	if !strings.Contains(page, want) {
		t.Errorf("listed run not linked as %s", want)
	}
	// Runs whose directory is not there get the usual names.
	if !strings.Contains(page, `<a href="fallback/1/verify.json">verify.json</a>`) {
		t.Error("unlisted run does not link the usual files")
	}
}
