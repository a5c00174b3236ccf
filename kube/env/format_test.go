package env

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kloop/kloop/kube/workload"
)

// nasty are values every format must carry unchanged.
var nasty = []Var{
	{Name: "PLAIN", Value: "hello"},
	{Name: "EMPTY", Value: ""},
	{Name: "MULTI", Value: "line1\nline2\n\nline4\n", Secret: true},
	{Name: "PEM", Value: "-----BEGIN KEY-----\nMIIB+/=\n-----END KEY-----\n", Secret: true},
	{Name: "CRLF", Value: "a\r\nb\r\n"},
	{Name: "SQUOTE", Value: "it's 'quoted'"},
	{Name: "DQUOTE", Value: `say "hi" \"esc\"`},
	{Name: "BACKSLASH", Value: `C:\path\n\t\\end\`},
	{Name: "DOLLAR", Value: "$HOME ${HOME} $(HOME) $$ `id` $"},
	{Name: "HASH", Value: "a #not a comment"},
	{Name: "SPACES", Value: "  lead and trail  "},
	{Name: "TAB", Value: "a\tb"},
	{Name: "UNICODE", Value: "héllo wörld ✓"},
	{Name: "EQUALS", Value: "a=b=c"},
	{Name: "JSONISH", Value: `{"a": [1, "two"], "<b>": "&"}`},
	{Name: "lower_case", Value: "x"},
}

func nastyResult() *Result {
	return &Result{Workload: workload.Workload{Kind: workload.Deployment, Name: "orders"}, Namespace: "dev", Container: "orders", Vars: slices.Clone(nasty)}
}

func write(t *testing.T, r *Result, f Format) string {
	t.Helper()
	var buf bytes.Buffer
	if err := r.Write(&buf, f); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

func TestDotenvRoundTrip(t *testing.T) {
	out := write(t, nastyResult(), Dotenv)
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if !strings.HasPrefix(line, "#") && !strings.Contains(line, `="`) {
			t.Errorf("line %q is not NAME=\"...\"", line)
		}
	}
	if n := strings.Count(out, "\n"); n != len(nasty)+1 {
		t.Errorf("%d lines for %d variables and a header: multi-line values must stay on one line:\n%s", n, len(nasty), out)
	}
	got, err := ParseDotenv(strings.NewReader(out))
	if err != nil {
		t.Fatalf("parse back: %v\n%s", err, out)
	}
	if len(got) != len(nasty) {
		t.Fatalf("parsed %d variables, wrote %d", len(got), len(nasty))
	}
	for i, v := range nasty {
		if got[i].Name != v.Name || got[i].Value != v.Value {
			t.Errorf("round trip of %s: got %s=%q, want %q", v.Name, got[i].Name, got[i].Value, v.Value)
		}
	}
}

func TestParseDotenvForms(t *testing.T) {
	in := "# comment\n\nexport A=plain value  # trailing comment\nB='single\n$literal \\n'\nC=\"double\\tq\nnext\" # c\n  D = spaced\nE=\nF=\"\\$HOME \\x\"\n1ST=digit\n"
	got, err := ParseDotenv(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"A=plain value", "B=single\n$literal \\n", "C=double\tq\nnext", "D=spaced", "E=", `F=$HOME \x`, "1ST=digit"}
	if p := pairs(got); !slices.Equal(p, want) {
		t.Errorf("got %q\nwant %q", p, want)
	}
	for _, bad := range []string{"NOEQUALS\n", "A=\"unterminated\n", "A='x' junk\n", "BAD NAME=x\n"} {
		if _, err := ParseDotenv(strings.NewReader(bad)); err == nil || !strings.Contains(err.Error(), "dotenv line 1") {
			t.Errorf("ParseDotenv(%q): err = %v, want a line-numbered error", bad, err)
		}
	}
}

func TestJSONRoundTrip(t *testing.T) {
	out := write(t, nastyResult(), JSON)
	var m map[string]string
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("decode: %v\n%s", err, out)
	}
	if len(m) != len(nasty) {
		t.Errorf("%d keys, want %d", len(m), len(nasty))
	}
	for _, v := range nasty {
		if m[v.Name] != v.Value {
			t.Errorf("%s: got %q, want %q", v.Name, m[v.Name], v.Value)
		}
	}
	// Resolution order is kept.
	dec := json.NewDecoder(strings.NewReader(out))
	var order []string
	dec.Token()
	for dec.More() {
		k, _ := dec.Token()
		dec.Token()
		order = append(order, k.(string))
	}
	for i, v := range nasty {
		if order[i] != v.Name {
			t.Fatalf("order %q, want the resolution order", order)
		}
	}
	if !strings.Contains(out, `\"<b>\": \"&\"`) {
		t.Errorf("JSON escapes HTML characters needlessly:\n%s", out)
	}
	empty := write(t, &Result{}, JSON)
	if empty != "{}\n" {
		t.Errorf("empty = %q", empty)
	}
}

// TestShellOutputSourcedBySh sources the shell output in sh (and bash when
// present) and compares what the shell then has.
func TestShellOutputSourcedBySh(t *testing.T) {
	r := nastyResult()
	r.Vars = append(r.Vars, Var{Name: "dotted.name", Value: "skipped"}, Var{Name: "2BAD", Value: "skipped"})
	out := write(t, r, Shell)
	if !strings.Contains(out, "# skipped \"dotted.name\": not a valid shell variable name\n") || !strings.Contains(out, `# skipped "2BAD"`) {
		t.Errorf("names a shell cannot export must become comments:\n%s", out)
	}
	file := filepath.Join(t.TempDir(), "env.sh")
	if err := os.WriteFile(file, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, v := range nasty {
		names = append(names, v.Name)
	}
	// Print each variable NUL-terminated, read from the environment of a
	// child (so export is checked too).
	script := `. "$1" && shift && for n in "$@"; do env | grep -q "^$n=" || { echo "not exported: $n" >&2; exit 1; }; eval "printf '%s\0' \"\${$n}\""; done`
	for _, sh := range []string{"sh", "bash"} {
		path, err := exec.LookPath(sh)
		if err != nil {
			if sh == "sh" {
				t.Fatal(err)
			}
			continue
		}
		t.Run(sh, func(t *testing.T) {
			cmd := exec.Command(path, append([]string{"-c", script, "sh", file}, names...)...)
			cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=/nonexistent-home"}
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			got, err := cmd.Output()
			if err != nil {
				t.Fatalf("%s: %v: %s\n%s", sh, err, stderr.String(), out)
			}
			vals := strings.Split(strings.TrimSuffix(string(got), "\x00"), "\x00")
			if len(vals) != len(nasty) {
				t.Fatalf("%d values from %s, want %d: %q", len(vals), sh, len(nasty), vals)
			}
			for i, v := range nasty {
				if vals[i] != v.Value {
					t.Errorf("%s: %s = %q, want %q", sh, v.Name, vals[i], v.Value)
				}
			}
		})
	}
}

func TestDotenvSkipsNamesItCannotCarry(t *testing.T) {
	r := &Result{Vars: []Var{{Name: "has space", Value: "x"}, {Name: "my.key-1", Value: "y"}}}
	out := write(t, r, Dotenv)
	if !strings.Contains(out, "# skipped \"has space\"") || !strings.Contains(out, "my.key-1=\"y\"\n") {
		t.Errorf("dotenv:\n%s", out)
	}
}

func TestFormats(t *testing.T) {
	for in, want := range map[string]Format{"": Dotenv, "dotenv": Dotenv, "JSON": JSON, "shell": Shell, "sh": Shell} {
		if got, err := ParseFormat(in); err != nil || got != want {
			t.Errorf("ParseFormat(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParseFormat("yaml"); err == nil || !strings.Contains(err.Error(), "use dotenv, json or shell") {
		t.Errorf("ParseFormat(yaml): %v", err)
	}
	if err := nastyResult().Write(&bytes.Buffer{}, "yaml"); err == nil {
		t.Error("Write with an unknown format succeeded")
	}
}

func TestSecretsRedactedInStrings(t *testing.T) {
	v := Var{Name: "TOKEN", Value: "s3cr3t", Secret: true}
	var buf bytes.Buffer
	for _, s := range []string{v.String(), v.LogValue().String()} {
		buf.WriteString(s)
	}
	if strings.Contains(buf.String(), "s3cr3t") || !strings.Contains(v.String(), "<redacted>") {
		t.Errorf("secret leaked: %s", buf.String())
	}
	if (Var{Name: "A", Value: "b"}).String() != "A=b" {
		t.Error("a non-secret value should print")
	}
}
