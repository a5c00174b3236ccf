package debugadapter

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/kloop/kloop/config"
)

// delveKeysNotOffered are Delve attributes the bridge lets through but the
// editors' launch schemas do not offer: they belong to modes kloop never
// runs Delve in (it always launches the binary it built, in exec mode).
var delveKeysNotOffered = map[string]string{
	"traceDirPath":        "replay mode",
	"coreFilePath":        "core mode",
	"processId":           "attach requests",
	"waitFor":             "attach requests",
	"guessSubstitutePath": "attach requests",
}

// TestVSCodeLaunchSchemaMatchesLaunchConfig: the VS Code launch schema offers
// every attribute the bridge acts on (with its JSON type) and every Delve
// option that means something in a kloop session, and nothing else, so
// IntelliSense never suggests a key the adapter warns about as unknown nor
// hides one it reads. Its traffic modes are config.TrafficModes.
func TestVSCodeLaunchSchemaMatchesLaunchConfig(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "extensions", "vscode", "package.json"))
	if err != nil {
		t.Fatal(err)
	}
	var pkg struct {
		Contributes struct {
			Debuggers []schemaDebugger `json:"debuggers"`
		} `json:"contributes"`
	}
	if err := json.Unmarshal(data, &pkg); err != nil {
		t.Fatalf("extensions/vscode/package.json: %v", err)
	}
	i := slices.IndexFunc(pkg.Contributes.Debuggers, func(d schemaDebugger) bool { return d.Type == "kloop" })
	if i < 0 {
		t.Fatal(`extensions/vscode/package.json contributes no "kloop" debugger`)
	}
	launch := pkg.Contributes.Debuggers[i].ConfigurationAttributes.Launch
	props := launch.Properties

	want := map[string]string{} // key -> JSON type, "" when any
	lt := reflect.TypeFor[LaunchConfig]()
	for f := range lt.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		want[name] = jsonType(f.Type)
	}
	for _, k := range delveKeys {
		if _, skip := delveKeysNotOffered[k]; !skip {
			want[k] = ""
		}
	}
	for k, typ := range want {
		p, ok := props[k]
		switch {
		case !ok:
			t.Errorf("the VS Code launch schema has no %q, which the kloop debug adapter reads: add it to contributes.debuggers[kloop] in extensions/vscode/package.json", k)
		case typ != "" && p.Type != typ:
			t.Errorf("the VS Code launch schema types %q as %q; the adapter decodes a %s", k, p.Type, typ)
		}
	}
	for k := range props {
		if _, ok := want[k]; !ok {
			t.Errorf("the VS Code launch schema offers %q, which the kloop debug adapter does not read (it would warn that the key is unknown)", k)
		}
	}
	if !slices.Equal(launch.Required, []string{"program"}) {
		t.Errorf("the VS Code launch schema requires %v; only program is required (without workload kloop debugs locally)", launch.Required)
	}
	var modes []string
	for _, m := range props["traffic"].Enum {
		s, _ := m.(string)
		modes = append(modes, s)
	}
	if !slices.Equal(modes, config.TrafficModes) {
		t.Errorf("the VS Code launch schema's traffic modes are %v; config.TrafficModes are %v", modes, config.TrafficModes)
	}
}

// schemaDebugger is the part of a package.json debugger contribution the test reads.
type schemaDebugger struct {
	Type                    string `json:"type"`
	ConfigurationAttributes struct {
		Launch struct {
			Required   []string `json:"required"`
			Properties map[string]struct {
				Type string `json:"type"`
				Enum []any  `json:"enum"`
			} `json:"properties"`
		} `json:"launch"`
	} `json:"configurationAttributes"`
}

func jsonType(t reflect.Type) string {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Slice:
		return "array"
	case reflect.Map, reflect.Struct:
		return "object"
	case reflect.Int, reflect.Int64:
		return "integer"
	}
	return ""
}
