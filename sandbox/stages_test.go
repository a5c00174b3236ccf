package sandbox

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// The kwokctl configuration carries every Stage kwok needs (given any,
// kwok uses no defaults): nodes that become and stay Ready, and pods that
// become Running but not Ready, complete (Jobs) and go when deleted.
func TestKwokctlConfigHasEveryStage(t *testing.T) {
	l := newLayout(t.TempDir(), "stages")
	if err := os.MkdirAll(l.ownDir, 0o700); err != nil {
		t.Fatal(err)
	}
	path, err := writeKwokctlConfig(l, 0)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	type stage struct {
		Kind     string `json:"kind"`
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
		Spec struct {
			ResourceRef struct {
				Kind string `json:"kind"`
			} `json:"resourceRef"`
			Next struct {
				StatusTemplate string `json:"statusTemplate"`
				Delete         bool   `json:"delete"`
			} `json:"next"`
		} `json:"spec"`
	}
	got := map[string]stage{}
	var kinds []string
	for _, doc := range strings.Split(string(data), "\n---\n") {
		var s stage
		if err := yaml.Unmarshal([]byte(doc), &s); err != nil {
			t.Fatalf("%s: %v\n%s", filepath.Base(path), err, doc)
		}
		kinds = append(kinds, s.Kind)
		if s.Kind == "Stage" {
			got[s.Metadata.Name] = s
		}
	}
	if kinds[0] != "KwokctlConfiguration" {
		t.Errorf("first document is a %s, want the KwokctlConfiguration", kinds[0])
	}
	for name, kind := range map[string]string{
		"node-initialize": "Node", "node-heartbeat-with-lease": "Node",
		"pod-running": "Pod", "pod-complete": "Pod", "pod-delete": "Pod",
	} {
		if s, ok := got[name]; !ok || s.Spec.ResourceRef.Kind != kind {
			t.Errorf("stage %s for %s missing: %+v", name, kind, got)
		}
	}
	if _, ok := got["pod-ready"]; ok {
		t.Errorf("kwok's pod-ready stage is there: it would mark pods Ready before anything listens")
	}
	tmpl := got["pod-running"].Spec.Next.StatusTemplate
	for _, want := range []string{"phase: Running", "type: Ready", "ready: false"} {
		if !strings.Contains(tmpl, want) {
			t.Errorf("pod-running's status lacks %q:\n%s", want, tmpl)
		}
	}
	if !regexp.MustCompile(`status: "False"\s+type: Ready\n`).MatchString(tmpl) {
		t.Errorf("pod-running does not leave the pod not Ready:\n%s", tmpl)
	}
	if !got["pod-delete"].Spec.Next.Delete {
		t.Errorf("pod-delete does not delete")
	}
}
