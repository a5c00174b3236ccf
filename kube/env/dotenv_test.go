package env

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// ParseDotenv reads a dotenv file: NAME=VALUE lines, optionally preceded
// by "export ", blank lines and # comments. VALUE is unquoted (trimmed, a
// " #" starts a comment), 'single-quoted' (literal, may span lines) or
// "double-quoted" (may span lines; \n \r \t \\ \" \$ \` escapes). It reads
// everything Write(Dotenv) writes; only the tests need it, to check that.
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
					case '\\', '"', '$', '`':
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
