// Package readme reads the commands README files show, from the Markdown
// itself, and checks them against the command tree a kloop binary's --help
// describes, so that a README and the binary cannot disagree unnoticed.
// Paths are relative to the repository root, which Root finds.
package readme

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// Files are the READMEs whose shell blocks and inline `kloop ...` spans
// are checked: the repository's and each editor's.
var Files = []string{
	"README.md",
	"extensions/vscode/README.md",
	"extensions/neovim/README.md",
	"extensions/goland/README.md",
}

// Root is the repository root: the nearest parent of the working directory
// holding go.mod.
func Root(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the working directory")
		}
		dir = parent
	}
}

// Block is one fenced code block of a Markdown file.
type Block struct {
	File    string
	Heading string // the nearest heading above it, without the #s
	Lang    string
	Lines   []string // trimmed: blocks inside list items are indented
}

// Markdown returns the fenced blocks of a Markdown file (path relative to
// Root) and the text outside them, where inline code spans live.
func Markdown(t testing.TB, path string) ([]Block, string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(Root(t), path))
	if err != nil {
		t.Fatal(err)
	}
	var blocks []Block
	var prose strings.Builder
	heading := ""
	var cur *Block
	fence := ""
	for _, line := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimSpace(line)
		if cur != nil {
			if strings.HasPrefix(trimmed, fence) && strings.Trim(trimmed, "`~") == "" {
				blocks = append(blocks, *cur)
				cur = nil
				continue
			}
			cur.Lines = append(cur.Lines, trimmed)
			continue
		}
		if strings.HasPrefix(trimmed, "```") || strings.HasPrefix(trimmed, "~~~") {
			fence = trimmed[:3]
			cur = &Block{File: path, Heading: heading, Lang: strings.TrimSpace(strings.Trim(trimmed, "`~"))}
			continue
		}
		if strings.HasPrefix(trimmed, "#") {
			heading = strings.TrimSpace(strings.TrimLeft(trimmed, "#"))
		}
		prose.WriteString(line + "\n")
	}
	if cur != nil {
		t.Fatalf("%s: a code block under %q is not closed", path, cur.Heading)
	}
	return blocks, prose.String()
}

// FindBlock is the one block of path under heading in lang ("" for none).
func FindBlock(t testing.TB, path, heading, lang string) Block {
	t.Helper()
	blocks, _ := Markdown(t, path)
	var found []Block
	for _, b := range blocks {
		if b.Heading == heading && b.Lang == lang {
			found = append(found, b)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%s: want one ```%s block under the heading %q, found %d; update the test if the README moved it", path, lang, heading, len(found))
	}
	return found[0]
}

// ShellCommands are the `kloop ...` lines of a shell block without their
// trailing comments, split into words as a shell does for words without
// quotes or other syntax (which fails t: the test would not run the line
// as a shell does).
func ShellCommands(t testing.TB, b Block) [][]string {
	t.Helper()
	var cmds [][]string
	for _, line := range b.Lines {
		if !strings.HasPrefix(line, "kloop ") {
			continue
		}
		if i := strings.Index(line, " #"); i >= 0 {
			line = line[:i]
		}
		if strings.ContainsAny(line, "'\"$\\|;&<>*`") {
			t.Fatalf("%s: %q uses shell syntax this test does not interpret; keep the README's commands plain words or teach the test", b.File, line)
		}
		cmds = append(cmds, strings.Fields(line))
	}
	return cmds
}

// LoopBlock is README.md's "The loop, from a terminal" shell block.
func LoopBlock(t testing.TB) Block {
	return FindBlock(t, "README.md", "The loop, from a terminal", "sh")
}

// Synopsis is the entries of README.md's CLI block: each `kloop ...` up to
// the next one on its line.
func Synopsis(t testing.TB) []string {
	t.Helper()
	b := FindBlock(t, "README.md", "CLI", "")
	var entries []string
	starts := regexp.MustCompile(`(^|\s)kloop `)
	for _, line := range b.Lines {
		idx := starts.FindAllStringIndex(line, -1)
		for i, m := range idx {
			end := len(line)
			if i+1 < len(idx) {
				end = idx[i+1][0]
			}
			entries = append(entries, strings.TrimSpace(line[m[0]:end]))
		}
	}
	return entries
}

// inlineSpan matches a code span that is a kloop command: `kloop WORD...`.
var inlineSpan = regexp.MustCompile("`(kloop [a-z][^`]*)`")

// Mentions are every `kloop ...` command of Files, each with where it is:
// the lines of their shell and plain blocks (README.md's CLI synopsis
// aside: Synopsis reads it) and their inline code spans.
func Mentions(t testing.TB) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	add := func(cmd, where string) {
		cmd = strings.Join(strings.Fields(cmd), " ")
		out[cmd] = append(out[cmd], where)
	}
	for _, path := range Files {
		blocks, prose := Markdown(t, path)
		for _, b := range blocks {
			if (path == "README.md" && b.Heading == "CLI") || (b.Lang != "" && b.Lang != "sh" && b.Lang != "bash" && b.Lang != "shell") {
				continue
			}
			for _, c := range ShellCommands(t, b) {
				add(strings.Join(c, " "), fmt.Sprintf("%s (%s)", path, b.Heading))
			}
		}
		for _, m := range inlineSpan.FindAllStringSubmatch(prose, -1) {
			add(m[1], path)
		}
	}
	return out
}

// GoLandTools are the command lines of GoLand's External Tools
// (extensions/goland/tools/kloop.xml, which its README has you install),
// each IDE $Macro$ standing as a placeholder argument.
func GoLandTools(t testing.TB) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(Root(t), "extensions", "goland", "tools", "kloop.xml"))
	if err != nil {
		t.Fatal(err)
	}
	var cmds []string
	params := regexp.MustCompile(`<option name="PARAMETERS" value="([^"]*)"`)
	macro := regexp.MustCompile(`\$[A-Za-z]+\$`)
	for _, m := range params.FindAllStringSubmatch(string(data), -1) {
		cmds = append(cmds, "kloop "+macro.ReplaceAllString(m[1], "MACRO"))
	}
	if len(cmds) == 0 {
		t.Fatal("extensions/goland/tools/kloop.xml has no PARAMETERS; update the test")
	}
	return cmds
}

// CLI is what a built binary's --help says about each command: the help a
// user reads, asked of the binary as a user would.
type CLI struct {
	Binary string

	mu    sync.Mutex
	cache map[string]*HelpPage
}

// HelpPage is what one command's --help says.
type HelpPage struct {
	Path  []string        // the command the help is about, from its Usage line
	Subs  []string        // its visible subcommands
	Flags map[string]bool // --name and -n -> whether it takes a value
}

var (
	flagLine  = regexp.MustCompile(`^\s+(?:-([A-Za-z]), )?--([a-z][a-z0-9-]*)(?: ([a-zA-Z]+))?(?:\s{2,}|$)`)
	wordToken = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)
)

// Help is the help page of the command at path (nil: the root).
func (c *CLI) Help(t testing.TB, path []string) *HelpPage {
	t.Helper()
	key := strings.Join(path, " ")
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cache == nil {
		c.cache = map[string]*HelpPage{}
	}
	if h, ok := c.cache[key]; ok {
		return h
	}
	out, err := exec.CommandContext(context.Background(), c.Binary, append(append([]string{}, path...), "--help")...).CombinedOutput()
	h := &HelpPage{Flags: map[string]bool{}}
	c.cache[key] = h
	if err != nil {
		// cobra refuses an unknown command of the root.
		return h
	}
	section := ""
	for _, line := range strings.Split(string(out), "\n") {
		if !strings.HasPrefix(line, " ") {
			section = strings.TrimSuffix(strings.TrimSpace(line), ":")
			continue
		}
		switch section {
		case "Usage":
			if h.Path == nil {
				for _, w := range strings.Fields(line) {
					if !wordToken.MatchString(w) {
						break
					}
					h.Path = append(h.Path, w)
				}
			}
		case "Available Commands":
			if f := strings.Fields(line); len(f) > 0 {
				h.Subs = append(h.Subs, f[0])
			}
		case "Flags", "Global Flags":
			if m := flagLine.FindStringSubmatch(line); m != nil {
				takes := m[3] != ""
				h.Flags["--"+m[2]] = takes
				if m[1] != "" {
					h.Flags["-"+m[1]] = takes
				}
			}
		}
	}
	return h
}

// Exists reports whether path is a command of the binary, hidden ones
// included: the help of an unknown subcommand is its parent's.
func (c *CLI) Exists(t testing.TB, path []string) bool {
	t.Helper()
	return strings.Join(c.Help(t, path).Path, " ") == strings.Join(append([]string{"kloop"}, path...), " ")
}

// Check walks one command as a README writes it, a plain command line or a
// synopsis entry (`[optional]`, `a|b` alternatives of one level, ` | `
// alternatives of the enclosing level, `-- ARGS` not kloop's), and returns
// what is wrong with it and the command paths it names.
func (c *CLI) Check(t testing.TB, line string) (problems []string, paths [][]string) {
	t.Helper()
	words := strings.Fields(strings.NewReplacer("[", " [ ", "]", " ] ", "(", " ", ")", " ").Replace(line))
	if len(words) == 0 || words[0] != "kloop" {
		return []string{"does not start with kloop"}, nil
	}
	path := []string{}
	var stack [][]string // the path at each open [
	valueNext := false
	clone := func(p []string) []string { return append([]string{}, p...) }
	for _, w := range words[1:] {
		switch {
		case w == "--":
			return problems, append(paths, path)
		case w == "[":
			stack = append(stack, clone(path))
			continue
		case w == "]":
			if len(stack) == 0 {
				problems = append(problems, "unbalanced ]")
				continue
			}
			path = stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			valueNext = false
			continue
		case w == "|":
			path = []string{}
			if len(stack) > 0 {
				path = clone(stack[len(stack)-1])
			}
			valueNext = false
			continue
		}
		if valueNext {
			valueNext = false
			continue
		}
		if strings.HasPrefix(w, "-") {
			name, _, hasValue := strings.Cut(w, "=")
			takes, ok := c.Help(t, path).Flags[name]
			if !ok {
				problems = append(problems, fmt.Sprintf("%s has no flag %s", commandName(path), name))
				continue
			}
			valueNext = takes && !hasValue
			continue
		}
		alts := strings.Split(w, "|")
		if !wordToken.MatchString(alts[0]) {
			continue // a placeholder: WORKLOAD, ./cmd/x, 8080
		}
		if len(c.Help(t, path).Subs) == 0 && !c.Exists(t, append(clone(path), alts[0])) {
			continue // an argument of a command without subcommands
		}
		for i, alt := range alts {
			next := append(clone(path), alt)
			if !c.Exists(t, next) {
				problems = append(problems, fmt.Sprintf("%s has no subcommand %s", commandName(path), alt))
				continue
			}
			paths = append(paths, next)
			if i == len(alts)-1 {
				path = next
			}
		}
	}
	return problems, append(paths, path)
}

func commandName(path []string) string { return strings.Join(append([]string{"kloop"}, path...), " ") }
