package env

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestDotenvQuoteEscapesWhatAShellExpands(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"plain", `"plain"`},
		{"", `""`},
		{"`id`", "\"\\`id\\`\""},
		{"a`touch pwned`b", "\"a\\`touch pwned\\`b\""},
		{"$(id)", `"\$(id)"`},
		{"${HOME} $HOME $$", `"\${HOME} \$HOME \$\$"`},
		{`"$(id)"`, `"\"\$(id)\""`},
		{"'`id`'", "\"'\\`id\\`'\""},
		{`back\slash\`, `"back\\slash\\"`},
		{`\$`, `"\\\$"`},
		{`\"`, `"\\\""`},
		{"\\`", "\"\\\\\\`\""},
		{"line1\nline2\r\n", `"line1\nline2\r\n"`},
		{"ends with backslash-newline\\\n", `"ends with backslash-newline\\\n"`},
		{"it's", `"it's"`},
		{"#!/bin/sh; rm -rf ~ &", `"#!/bin/sh; rm -rf ~ &"`},
	} {
		if got := DotenvQuote(c.in); got != c.want {
			t.Errorf("DotenvQuote(%q) = %s, want %s", c.in, got, c.want)
		}
	}
}

func TestShellQuoteExpandsNothing(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"plain", `'plain'`},
		{"", `''`},
		{"`id`", "'`id`'"},
		{"$(id)", `'$(id)'`},
		{"${HOME} $$", `'${HOME} $$'`},
		{`"$(id)"`, `'"$(id)"'`},
		{"it's `id`", `'it'\''s ` + "`id`'"},
		{`back\slash\`, `'back\slash\'`},
		{"line1\nline2\r\n", "'line1\nline2\r\n'"},
	} {
		if got := ShellQuote(c.in); got != c.want {
			t.Errorf("ShellQuote(%q) = %s, want %s", c.in, got, c.want)
		}
	}
}

// hostile are values that run commands, expand variables or end the
// quoting when written carelessly.
var hostile = []Var{
	{Name: "BACKTICKS", Value: "`touch pwned-backtick`"},
	{Name: "SUBST", Value: "$(touch pwned-subst)"},
	{Name: "ID", Value: "$(id) `id` ${HOME} $HOME $$ $1 $@ $"},
	{Name: "NESTED", Value: "\"$(touch pwned-nested)\" '`touch pwned-nested2`'"},
	{Name: "DQUOTES", Value: `say "hi" \"esc\" "`},
	{Name: "SQUOTES", Value: `it's 'quoted' '\''`},
	{Name: "BACKSLASHES", Value: `\ \\ \\\ \$ \" \` + "\\` \\n \\t end\\"},
	{Name: "NEWLINES", Value: "line1\nline2\n\n$(touch pwned-nl)\n"},
	{Name: "CRLF", Value: "a\r\nb\r"},
	{Name: "BACKSLASH_NEWLINE", Value: "continued\\\nline"},
	{Name: "SEMICOLON", Value: "x; touch pwned-semicolon; # && || | > pwned-redirect"},
	{Name: "GLOB", Value: "* ? [a-z] ~ ~root"},
	{Name: "UNICODE", Value: "héllo ✓ \x01\x7f"},
	{Name: "EMPTY", Value: ""},
}

// TestDotenvAndShellSourcedBySh writes the hostile values in both formats
// and, in every POSIX shell at hand, runs `set -a; . ./file; printf %s
// "$VAR"`: nothing may run, and each value must come back byte for byte
// (in dotenv, a newline or carriage return comes back as its escape, \n or
// \r: the one-line form dotenv readers expect, which a shell leaves as is).
func TestDotenvAndShellSourcedBySh(t *testing.T) {
	var shells []string
	for _, sh := range []string{"sh", "dash", "bash", "busybox", "ksh", "zsh"} {
		if path, err := exec.LookPath(sh); err == nil {
			shells = append(shells, path)
		}
	}
	if len(shells) == 0 {
		t.Fatal("no sh")
	}
	r := &Result{Vars: hostile}
	for _, f := range []Format{Dotenv, Shell} {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "file"), []byte(write(t, r, f)), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, sh := range shells {
			t.Run(fmt.Sprintf("%s/%s", f, filepath.Base(sh)), func(t *testing.T) {
				for _, v := range hostile {
					script := fmt.Sprintf(`set -a; . ./file; printf %%s "$%s"`, v.Name)
					argv := []string{sh, "-c", script}
					switch filepath.Base(sh) {
					case "busybox":
						argv = []string{sh, "sh", "-c", script}
					case "zsh":
						argv = []string{sh, "--emulate", "sh", "-c", script}
					}
					cmd := exec.Command(argv[0], argv[1:]...)
					cmd.Dir = dir
					cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=/nonexistent-home"}
					var stderr bytes.Buffer
					cmd.Stderr = &stderr
					got, err := cmd.Output()
					if err != nil || stderr.Len() > 0 {
						t.Fatalf("%s: %v: %s", v.Name, err, stderr.String())
					}
					want := v.Value
					if f == Dotenv {
						want = strings.NewReplacer("\n", `\n`, "\r", `\r`).Replace(want)
					}
					if string(got) != want {
						t.Errorf("%s = %q, want %q", v.Name, got, want)
					}
				}
				entries, err := os.ReadDir(dir)
				if err != nil {
					t.Fatal(err)
				}
				if len(entries) != 1 {
					var names []string
					for _, e := range entries {
						names = append(names, e.Name())
					}
					t.Fatalf("sourcing the %s output ran commands of its values: %q appeared", f, names)
				}
			})
		}
	}
}
