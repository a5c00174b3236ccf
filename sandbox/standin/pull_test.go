package standin

import (
	"testing"
	"time"
)

func TestPullBackoff(t *testing.T) {
	for n, want := range map[int]time.Duration{
		1: 10 * time.Second, 2: 20 * time.Second, 3: 40 * time.Second, 5: 160 * time.Second,
		6: 5 * time.Minute, 7: 5 * time.Minute, 50: 5 * time.Minute,
	} {
		if got := pullBackoff(n); got != want {
			t.Errorf("pullBackoff(%d) = %v, want %v", n, got, want)
		}
	}
}

func TestPullCoversOnlyItsRegistries(t *testing.T) {
	p := Pull{Registries: []string{"127.0.0.1:5000"}}
	for image, want := range map[string]bool{
		"127.0.0.1:5000/kloop/agent:v1":                   true,
		"127.0.0.1:5000/kloop/agent@sha256:" + zeros64:    true,
		"127.0.0.1:5000/kloop/agent:v1@sha256:" + zeros64: true,
		"127.0.0.1:5001/kloop/agent:v1":                   false,
		"ghcr.io/kloop/agent:v1":                          false, // the local build's
		"ko://github.com/kloop/kloop/cmd/kloop":           false,
		"kloop/agent":                                     false, // docker.io
		"127.0.0.1:5000/UPPER/case":                       false, // not a reference
	} {
		if got := p.pulls(image); got != want {
			t.Errorf("pulls(%q) = %v, want %v", image, got, want)
		}
	}
}

const zeros64 = "0000000000000000000000000000000000000000000000000000000000000000"
