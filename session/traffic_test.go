package session

import (
	"strings"
	"testing"
)

func TestParseTraffic(t *testing.T) {
	for _, tc := range []struct {
		in, want, err string
	}{
		{in: "", want: "steal"},
		{in: "steal", want: "steal"},
		{in: "mirror", want: "mirror"},
		// Spelled as .kloop.yaml and the schema's enum spell it.
		{in: "Steal", err: `traffic "Steal" is not one of steal, mirror; leave it out for steal`},
		{in: "stael", err: `traffic "stael" is not one of steal, mirror; leave it out for steal`},
	} {
		got, err := ParseTraffic(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseTraffic(%q) = %q, %v; want error containing %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || string(got) != tc.want {
			t.Errorf("ParseTraffic(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}
