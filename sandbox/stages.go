package sandbox

import (
	"embed"
	"fmt"
	"strings"
)

// stageFiles are the kwok Stages the sandbox's kwok runs, given to kwokctl
// in its configuration (which then replaces kwok's defaults). They are
// kwok's defaults for binary clusters except one: pod-running leaves a new
// pod Running but not Ready, and package standin marks it Ready once its
// stand-ins listen and a port-forward through the apiserver reaches them.
// With kwok's own pod-ready stage a pod was Ready before anything listened,
// so a client that picked a Ready pod could be refused.
//
//go:embed stages/*.yaml
var stageFiles embed.FS

// stageOrder lists the files of stageFiles in the order kwokctl gets them.
var stageOrder = []string{
	"node-initialize.yaml",
	"node-heartbeat-with-lease.yaml",
	"pod-running.yaml",
	"pod-complete.yaml",
	"pod-delete.yaml",
}

// stagesYAML is every Stage as YAML documents, each starting with "---".
func stagesYAML() (string, error) {
	var b strings.Builder
	for _, name := range stageOrder {
		data, err := stageFiles.ReadFile("stages/" + name)
		if err != nil {
			return "", fmt.Errorf("kwok stage %s: %w", name, err)
		}
		b.WriteString("---\n")
		b.Write(data)
		if !strings.HasSuffix(string(data), "\n") {
			b.WriteString("\n")
		}
	}
	return b.String(), nil
}
