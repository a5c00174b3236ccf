package build

import (
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// position matches "file.go:12:5: message" and "file.go:12: message" as the
// go command prints them; the file may be relative to the build directory.
var position = regexp.MustCompile(`^(.+?\.go):(\d+)(?::(\d+))?: (.*)$`)

// ParseGoOutput extracts compiler errors from go build output. Relative
// file names are resolved against dir. Indented continuation lines (such
// as the "have ... want ..." of a type error) are joined to the message
// they belong to; package headers ("# pkg") and summaries are dropped.
func ParseGoOutput(dir, output string) []Diagnostic {
	var diags []Diagnostic
	for _, line := range strings.Split(output, "\n") {
		line = strings.TrimRight(line, "\r")
		if line == "" || strings.HasPrefix(line, "# ") {
			continue
		}
		if strings.HasPrefix(line, "\t") && len(diags) > 0 {
			last := &diags[len(diags)-1]
			last.Message += "\n" + strings.TrimSpace(line)
			continue
		}
		m := position.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		lineNo, err := strconv.Atoi(m[2])
		if err != nil {
			continue
		}
		col := 0
		if m[3] != "" {
			col, _ = strconv.Atoi(m[3])
		}
		file := m[1]
		if !filepath.IsAbs(file) {
			file = filepath.Join(dir, file)
		}
		diags = append(diags, Diagnostic{File: filepath.Clean(file), Line: lineNo, Column: col, Message: m[4]})
	}
	return diags
}
