package env

import (
	"bufio"
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

// ShellQuote quotes s for a POSIX shell: single quotes, with ' written as '\”.
func ShellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// DotenvQuote quotes s for a dotenv file: double quotes, with \ " $
// escaped by a backslash and newline and carriage return written as \n
// and \r, so that every value is one line and no dotenv reader expands a
// $VAR in it (the godotenv / docker compose conventions).
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

// ParseDotenv reads a dotenv file: NAME=VALUE lines, optionally preceded
// by "export ", blank lines and # comments. VALUE is unquoted (trimmed, a
// " #" starts a comment), 'single-quoted' (literal, may span lines) or
// "double-quoted" (may span lines; \n \r \t \\ \" \$ escapes). It reads
// everything Write(Dotenv) writes.
func ParseDotenv(r io.Reader) ([]Var, error) {
	data, err := io.ReadAll(bufio.NewReader(r))
	if err != nil {
		return nil, fmt.Errorf("read dotenv: %w", err)
	}
	s := string(data)
	var vars []Var
	line := 1
	for len(s) > 0 {
		// One logical line.
		s = strings.TrimLeft(s, " \t")
		if s == "" {
			break
		}
		if s[0] == '\n' || s[0] == '\r' {
			if s[0] == '\n' {
				line++
			}
			s = s[1:]
			continue
		}
		if s[0] == '#' {
			i := strings.IndexByte(s, '\n')
			if i < 0 {
				break
			}
			s = s[i:]
			continue
		}
		if rest, ok := strings.CutPrefix(s, "export "); ok {
			s = strings.TrimLeft(rest, " \t")
		}
		eq := strings.IndexByte(s, '=')
		nl := strings.IndexByte(s, '\n')
		if eq < 0 || (nl >= 0 && nl < eq) {
			return nil, fmt.Errorf("dotenv line %d: expected NAME=VALUE", line)
		}
		name := strings.TrimRight(s[:eq], " \t")
		if !dotenvName.MatchString(name) {
			return nil, fmt.Errorf("dotenv line %d: invalid name %q", line, name)
		}
		s = strings.TrimLeft(s[eq+1:], " \t")
		var val string
		switch {
		case strings.HasPrefix(s, "'"):
			end := strings.IndexByte(s[1:], '\'')
			if end < 0 {
				return nil, fmt.Errorf("dotenv line %d: %s: unterminated single quote", line, name)
			}
			val = s[1 : 1+end]
			s = s[end+2:]
		case strings.HasPrefix(s, `"`):
			var b strings.Builder
			i := 1
			closed := false
			for ; i < len(s); i++ {
				c := s[i]
				if c == '"' {
					closed = true
					break
				}
				if c == '\\' && i+1 < len(s) {
					i++
					switch s[i] {
					case 'n':
						b.WriteByte('\n')
					case 'r':
						b.WriteByte('\r')
					case 't':
						b.WriteByte('\t')
					case '\\', '"', '$':
						b.WriteByte(s[i])
					default:
						b.WriteByte('\\')
						b.WriteByte(s[i])
					}
					continue
				}
				b.WriteByte(c)
			}
			if !closed {
				return nil, fmt.Errorf("dotenv line %d: %s: unterminated double quote", line, name)
			}
			val = b.String()
			line += strings.Count(s[:i], "\n")
			s = s[i+1:]
		default:
			end := strings.IndexByte(s, '\n')
			if end < 0 {
				end = len(s)
			}
			val = s[:end]
			if i := strings.Index(val, " #"); i >= 0 {
				val = val[:i]
			}
			val = strings.TrimRight(val, " \t\r")
			s = s[end:]
		}
		// The rest of the line may hold only a comment.
		rest := s
		if i := strings.IndexByte(rest, '\n'); i >= 0 {
			rest = rest[:i]
		}
		if t := strings.TrimSpace(rest); t != "" && !strings.HasPrefix(t, "#") {
			return nil, fmt.Errorf("dotenv line %d: %s: unexpected text after the value", line, name)
		}
		s = s[len(rest):]
		vars = append(vars, Var{Name: name, Value: val})
	}
	return vars, nil
}
