package env

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"strings"
)

// Format is an output format of Result.Write.
type Format string

// The output formats.
const (
	Dotenv Format = "dotenv"
	JSON   Format = "json"
	Shell  Format = "shell"
)

// Formats lists the formats, for flag help.
var Formats = []Format{Dotenv, JSON, Shell}

// ParseFormat parses a format name ("" means dotenv; "env" and "sh" are
// accepted too).
func ParseFormat(s string) (Format, error) {
	switch strings.ToLower(s) {
	case "", "dotenv", "env", ".env":
		return Dotenv, nil
	case "json":
		return JSON, nil
	case "shell", "sh", "bash", "export":
		return Shell, nil
	}
	return "", fmt.Errorf("unknown env format %q (use dotenv, json or shell)", s)
}

var (
	// dotenvName: names a dotenv line can carry unquoted.
	dotenvName = regexp.MustCompile(`^[A-Za-z0-9_.][A-Za-z0-9_.\-]*$`)
	// shellName: names a POSIX shell can export.
	shellName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// Write renders the variables in format f. Dotenv and shell begin with a
// comment naming the workload; a variable whose name the format cannot
// carry is replaced by a comment saying so (JSON carries every name).
func (r *Result) Write(w io.Writer, f Format) error {
	var buf bytes.Buffer
	switch f {
	case JSON:
		buf.WriteByte('{')
		for i, v := range r.Vars {
			if i > 0 {
				buf.WriteByte(',')
			}
			buf.WriteString("\n  ")
			writeJSONString(&buf, v.Name)
			buf.WriteString(": ")
			writeJSONString(&buf, v.Value)
		}
		if len(r.Vars) > 0 {
			buf.WriteByte('\n')
		}
		buf.WriteString("}\n")
	case Dotenv, Shell:
		fmt.Fprintf(&buf, "# kloop env %s, container %s, namespace %s\n", r.Workload, oneLine(r.Container), oneLine(r.Namespace))
		for _, v := range r.Vars {
			if f == Dotenv {
				if !dotenvName.MatchString(v.Name) {
					fmt.Fprintf(&buf, "# skipped %q: not a name a dotenv file can carry\n", v.Name)
					continue
				}
				buf.WriteString(v.Name + "=" + DotenvQuote(v.Value) + "\n")
				continue
			}
			if !shellName.MatchString(v.Name) {
				fmt.Fprintf(&buf, "# skipped %q: not a valid shell variable name\n", v.Name)
				continue
			}
			buf.WriteString("export " + v.Name + "=" + ShellQuote(v.Value) + "\n")
		}
	default:
		return fmt.Errorf("unknown env format %q (use dotenv, json or shell)", f)
	}
	if _, err := w.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("write env as %s: %w", f, err)
	}
	return nil
}

func oneLine(s string) string { return strings.NewReplacer("\n", " ", "\r", " ").Replace(s) }

func writeJSONString(buf *bytes.Buffer, s string) {
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	buf.Truncate(buf.Len() - 1)
}

// ShellQuote quotes s for a POSIX shell: single quotes, each ' of s
// written as a closing quote, an escaped quote and an opening quote. A
// shell expands nothing inside single quotes ($, `, \ and newlines are
// literal), so every value comes back byte for byte.
func ShellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// DotenvQuote quotes s for a dotenv file: double quotes, with \ " $ and `
// escaped by a backslash and newline and carriage return written as \n
// and \r, so that every value is one line and no dotenv reader expands a
// $VAR in it (the godotenv / docker compose conventions).
//
// The escaped characters are all that a POSIX shell expands inside double
// quotes, so `set -a; . ./file` runs nothing a value holds ($(cmd),
// `cmd`, ${VAR}) and gets every value back unchanged, except that a
// newline or carriage return stays the two characters \n or \r there
// (a one-line form a shell would read as a newline does not exist).
func DotenvQuote(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for _, c := range []byte(s) {
		switch c {
		case '\\':
			b.WriteString(`\\`)
		case '"':
			b.WriteString(`\"`)
		case '$':
			b.WriteString(`\$`)
		case '`':
			b.WriteString("\\`")
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}
