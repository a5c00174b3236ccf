package config

import (
	"fmt"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Port is the intercepted container port (Remote) and the local port its
// traffic goes to (Local). The zero Port means "not set".
type Port struct {
	Remote int
	Local  int
}

// portNumber matches 1..65535 with optional leading zeros; shared by the
// schema so that editors and the parser agree.
const portNumber = `0*([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])`

// ParsePort reads "REMOTE" or "REMOTE:LOCAL" (each 1..65535); local is
// remote when not given. The error text is fit to show a user as is.
func ParsePort(s string) (remote, local int, err error) {
	rs, ls, hasLocal := strings.Cut(s, ":")
	remote, err = portNum(rs)
	if err == nil && hasLocal {
		local, err = portNum(ls)
	} else {
		local = remote
	}
	if err != nil {
		return 0, 0, fmt.Errorf("port %q: %w; write REMOTE or REMOTE:LOCAL, such as 8080 or 8080:3000", s, err)
	}
	return remote, local, nil
}

func portNum(s string) (int, error) {
	if s == "" {
		return 0, fmt.Errorf("port number is empty")
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return 0, fmt.Errorf("%q is not a port number", s)
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("%s is out of range 1..65535", s)
	}
	return n, nil
}

// String returns "REMOTE" when both ports are equal, else "REMOTE:LOCAL";
// "" for the zero Port.
func (p Port) String() string {
	switch {
	case p == (Port{}):
		return ""
	case p.Local == p.Remote:
		return strconv.Itoa(p.Remote)
	}
	return strconv.Itoa(p.Remote) + ":" + strconv.Itoa(p.Local)
}

// IsZero reports whether p is unset.
func (p Port) IsZero() bool { return p == (Port{}) }

// MarshalText writes the String form, so JSON carries a plain string.
func (p Port) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText parses the forms ParsePort accepts.
func (p *Port) UnmarshalText(b []byte) error {
	r, l, err := ParsePort(string(b))
	if err != nil {
		return err
	}
	*p = Port{Remote: r, Local: l}
	return nil
}

// UnmarshalYAML accepts a number (8080) or a string ("8080:3000").
func (p *Port) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!str" && n.ShortTag() != "!!int") {
		return fmt.Errorf("must be a port number or a \"REMOTE:LOCAL\" string, not %s", describeNode(n))
	}
	return p.UnmarshalText([]byte(n.Value))
}

func (Port) jsonSchema() map[string]any {
	return map[string]any{"anyOf": []any{
		map[string]any{"type": "integer", "minimum": 1, "maximum": 65535},
		map[string]any{
			"type":                "string",
			"pattern":             "^" + portNumber + "(:" + portNumber + ")?$",
			"patternErrorMessage": "write REMOTE or REMOTE:LOCAL, such as 8080 or 8080:3000, each 1..65535",
		},
	}}
}
