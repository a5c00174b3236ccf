package config

import (
	"bytes"
	"errors"
	"testing"

	"github.com/kloop/kloop/kube/workload"
)

// FuzzParse checks that no input crashes Parse and that every error points
// into the file, so the LSP can always place its diagnostic. The seed corpus
// is in testdata/fuzz/FuzzParse; plain `go test` runs it.
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("f.yaml", data)
		if err == nil {
			if cfg == nil {
				t.Fatal("Parse returned neither a config nor an error")
			}
			if cfg.Claim.For <= 0 || cfg.Claim.For > MaxClaimFor {
				t.Errorf("accepted claim.for %v", cfg.Claim.For)
			}
			for _, ic := range cfg.Intercepts {
				if ic.Name == "" {
					t.Errorf("accepted an intercept without a name: %+v", ic)
				}
				if w, err := workload.Parse(ic.Workload.String()); err != nil || w != ic.Workload {
					t.Errorf("accepted workload %#v: %v", ic.Workload, err)
				}
			}
			return
		}
		var errs *Errors
		if !errors.As(err, &errs) {
			t.Fatalf("error is %T, want *Errors: %v", err, err)
		}
		if cfg != nil {
			t.Errorf("returned a config with errors")
		}
		if len(errs.List) == 0 || len(errs.List) > maxErrors {
			t.Errorf("got %d errors", len(errs.List))
		}
		// An upper bound on the lines YAML sees: \r\n counts twice here.
		lines := 1 + bytes.Count(data, []byte("\n")) + bytes.Count(data, []byte("\r")) +
			bytes.Count(data, []byte("\u0085")) + bytes.Count(data, []byte("\u2028")) + bytes.Count(data, []byte("\u2029"))
		for _, e := range errs.List {
			if e.Line < 1 || e.Column < 1 || e.Line > lines {
				t.Errorf("error outside the file (%d lines): %v", lines, e)
			}
			if e.Message == "" {
				t.Errorf("error without a message: %#v", e)
			}
		}
	})
}
