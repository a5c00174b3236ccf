package readme_test

import (
	"sort"
	"strings"
	"testing"

	"github.com/kloop/kloop/test/editor"
	"github.com/kloop/kloop/test/readme"
)

// The commands are read from the Markdown at test time, never copied here.
// README.md's loop block is also run end to end, as printed, against the
// sandbox by test/intercept's TestREADMELoopRunsAsPrinted.

var kloopBinary = editor.NewBinary("kloop-readme-test-bin")

func cli(t *testing.T) *readme.CLI { return &readme.CLI{Binary: kloopBinary.Path(t)} }

// TestREADMESynopsisIsTheCommandTree: every command and flag README.md's
// CLI synopsis shows exists in the built binary, and every command the
// binary's help lists (cobra's own help and completion aside) is in the
// synopsis.
func TestREADMESynopsisIsTheCommandTree(t *testing.T) {
	c := cli(t)
	entries := readme.Synopsis(t)
	if len(entries) < 10 {
		t.Fatalf("README.md's CLI block has %d commands, want the whole CLI: %q", len(entries), entries)
	}
	shown := map[string]bool{}
	for _, entry := range entries {
		problems, paths := c.Check(t, entry)
		for _, p := range problems {
			t.Errorf("README.md's CLI synopsis %q: %s", entry, p)
		}
		for _, p := range paths {
			shown[strings.Join(p, " ")] = true
		}
	}
	if subs := c.Help(t, nil).Subs; len(subs) < 10 {
		t.Fatalf("kloop --help lists %v; the test cannot read its help", subs)
	}
	var missing []string
	var walk func(path []string)
	walk = func(path []string) {
		for _, sub := range c.Help(t, path).Subs {
			if len(path) == 0 && (sub == "help" || sub == "completion") {
				continue
			}
			next := append(append([]string{}, path...), sub)
			if !shown[strings.Join(next, " ")] {
				missing = append(missing, "kloop "+strings.Join(next, " "))
			}
			walk(next)
		}
	}
	walk(nil)
	sort.Strings(missing)
	for _, m := range missing {
		t.Errorf("%s is a command of the binary (in its --help) but not in README.md's CLI synopsis", m)
	}
}

// TestREADMECommandsParse: every `kloop ...` command the READMEs show (in
// shell blocks and inline code, README.md's and each editor's) and every
// GoLand External Tool names commands and flags the binary has.
func TestREADMECommandsParse(t *testing.T) {
	c := cli(t)
	all := readme.Mentions(t)
	if len(all) < 20 {
		t.Fatalf("found only %d kloop commands in the READMEs; the extraction is broken: %v", len(all), all)
	}
	for _, cmd := range readme.GoLandTools(t) {
		all[cmd] = append(all[cmd], "extensions/goland/tools/kloop.xml")
	}
	for cmd, where := range all {
		problems, _ := c.Check(t, cmd)
		for _, p := range problems {
			t.Errorf("%q (in %s): %s", cmd, strings.Join(where, ", "), p)
		}
	}
	loop := readme.ShellCommands(t, readme.LoopBlock(t))
	if len(loop) < 6 {
		t.Fatalf("README.md's loop block has %d kloop commands: %v", len(loop), loop)
	}
	for _, cmd := range loop {
		if _, ok := all[strings.Join(cmd, " ")]; !ok {
			t.Errorf("the loop's %q was not among the checked commands", strings.Join(cmd, " "))
		}
	}
}

// TestCheckCatchesMistakes keeps the checker honest: commands and flags
// the binary lacks are reported, real ones are not.
func TestCheckCatchesMistakes(t *testing.T) {
	c := cli(t)
	tests := []struct {
		line string
		bad  string // a problem that must be reported; "" for none
	}{
		{"kloop claim --pool dev --for 8h", ""},
		{"kloop intercept orders --port 8080:9090 --header x-dev=me -- go run . --nonsense", ""},
		{"kloop daemon [stop | stats [--gc] [-o json]]", ""},
		{"kloop pool create|list|delete", ""},
		{"kloop env orders --format dotenv|json|shell", ""},
		{"kloop agent", ""},
		{"kloop claim --pol dev", "kloop claim has no flag --pol"},
		{"kloop pool creat dev", "kloop pool has no subcommand creat"},
		{"kloop sandbox up|dwn", "kloop sandbox has no subcommand dwn"},
		{"kloop lsp | dap --listn 127.0.0.1:0", "kloop dap has no flag --listn"},
		{"kloop daemon [stop | stats [--gcc]]", "kloop daemon stats has no flag --gcc"},
		{"kloop nosuch", "kloop has no subcommand nosuch"},
	}
	for _, tt := range tests {
		problems, _ := c.Check(t, tt.line)
		got := strings.Join(problems, "; ")
		if tt.bad == "" && got != "" || tt.bad != "" && !strings.Contains(got, tt.bad) {
			t.Errorf("Check(%q) = %q, want %q", tt.line, got, tt.bad)
		}
	}
}
