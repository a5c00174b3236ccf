package config

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestREADMEExampleParsesAndValidates reads the example under README.md's
// "`.kloop.yaml`" heading from the README itself: Parse takes it, and it
// validates against the generated schema the editors use.
func TestREADMEExampleParsesAndValidates(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	const heading = "## `.kloop.yaml`"
	_, section, ok := strings.Cut(string(data), "\n"+heading+"\n")
	if !ok {
		t.Fatalf("README.md has no %q section; update the test", heading)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	_, example, ok := strings.Cut(section, "\n```yaml\n")
	if !ok {
		t.Fatalf("README.md's %s section has no ```yaml block", heading)
	}
	example, _, ok = strings.Cut(example, "\n```")
	if !ok {
		t.Fatal("README.md's .kloop.yaml example is not closed")
	}
	cfg, err := Parse(".kloop.yaml", []byte(example))
	if err != nil {
		t.Fatalf("README.md's .kloop.yaml example does not parse: %v\n%s", err, example)
	}
	if len(cfg.Intercepts) == 0 || cfg.Claim.Pool == "" {
		t.Errorf("README.md's example parsed to %+v, want its claim and intercepts", cfg)
	}
	raw, err := Schema()
	if err != nil {
		t.Fatal(err)
	}
	var schema map[string]any
	if err := json.Unmarshal(raw, &schema); err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := yaml.Unmarshal([]byte(example), &doc); err != nil {
		t.Fatal(err)
	}
	if errs := validate(t, schema, jsonValue(t, doc), ""); len(errs) > 0 {
		t.Errorf("README.md's .kloop.yaml example does not validate against %s: %v", SchemaFile, errs)
	}
}
