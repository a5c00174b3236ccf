package config

import (
	"testing"

	"github.com/kloop/kloop/kube/intercept"
)

// TestAgentImagePatternIsTheInjectors: the editor's schema, the parser and
// the daemon that injects the image accept the same references.
func TestAgentImagePatternIsTheInjectors(t *testing.T) {
	if got := tagOf(Config{}, "AgentImage", "pattern"); got != intercept.ImageRefPattern {
		t.Errorf("agentImage pattern %q differs from intercept.ImageRefPattern %q", got, intercept.ImageRefPattern)
	}
	cfg, err := Parse(".kloop.yaml", []byte("agentImage: localhost:5000/kloop/agent:v1.2.3\n"))
	if err != nil || cfg.AgentImage != "localhost:5000/kloop/agent:v1.2.3" {
		t.Errorf("Parse = %+v, %v", cfg, err)
	}
}
