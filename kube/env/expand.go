package env

import (
	"strings"
	"unicode/utf8"
)

// Expand expands $(NAME) references in s the way Kubernetes does for
// container env values, command and args (k8s.io/kubernetes
// third_party/forked/golang/expansion): lookup gives the value of NAME;
// a reference lookup does not know is left as written; $$ is a literal $
// (so $$(NAME) yields "$(NAME)"); a $ not followed by ( or $ is kept; an
// unterminated "$(" is kept.
func Expand(s string, lookup func(name string) (string, bool)) string {
	var buf strings.Builder
	checkpoint := 0
	for cursor := 0; cursor < len(s); cursor++ {
		if s[cursor] != '$' || cursor+1 >= len(s) {
			continue
		}
		buf.WriteString(s[checkpoint:cursor])
		read, isVar, advance := readVariableName(s[cursor+1:])
		if isVar {
			if v, ok := lookup(read); ok {
				buf.WriteString(v)
			} else {
				buf.WriteString("$(" + read + ")")
			}
		} else {
			buf.WriteString(read)
		}
		cursor += advance
		checkpoint = cursor + 1
	}
	return buf.String() + s[checkpoint:]
}

// readVariableName reads what follows a $: the bytes to emit (or the
// variable name), whether it is a variable, and how many bytes it used.
func readVariableName(s string) (string, bool, int) {
	r, size := utf8.DecodeRuneInString(s)
	switch r {
	case '$':
		return "$", false, size
	case '(':
		for i := 1; i < len(s); i++ {
			if s[i] == ')' {
				return s[1:i], true, i + 1
			}
		}
		return "$(", false, 1
	default:
		// As Kubernetes does: the rune, so an invalid byte becomes U+FFFD.
		return "$" + string(r), false, size
	}
}
