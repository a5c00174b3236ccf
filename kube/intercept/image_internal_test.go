package intercept

import (
	"strings"
	"testing"
)

func TestValidateImageRef(t *testing.T) {
	tests := []struct {
		ref     string
		wantErr string // "" means valid
	}{
		{ref: "ghcr.io/kloop/agent:v1.2.3"},
		{ref: "localhost:5000/kloop/agent:devel"},
		{ref: "kloop/agent"},
		{ref: "registry.example.com/team/kloop-agent@sha256:" + strings.Repeat("a", 64)},
		{ref: "registry.example.com/kloop/agent:v1@sha256:" + strings.Repeat("0", 64)},
		{ref: "", wantErr: "empty"},
		{ref: "Registry.example.com/Kloop/agent:v1", wantErr: "lower-case path"},
		{ref: "ghcr.io/kloop/agent:", wantErr: "not an image reference"},
		{ref: "ghcr.io/kloop/agent v1", wantErr: "not an image reference"},
		{ref: "https://ghcr.io/kloop/agent:v1", wantErr: "not an image reference"},
		{ref: "ghcr.io/kloop/agent@sha256:abc", wantErr: "not an image reference"},
	}
	for _, tt := range tests {
		t.Run(tt.ref, func(t *testing.T) {
			err := ValidateImageRef(tt.ref)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("ValidateImageRef(%q): %v", tt.ref, err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("ValidateImageRef(%q) = %v, want an error containing %q", tt.ref, err, tt.wantErr)
			}
		})
	}
}

func TestDefaultImageIsTaggedWithTheVersion(t *testing.T) {
	if got, want := DefaultImage(), DefaultImageRepository+":"+Version; got != want || strings.HasSuffix(got, ":latest") {
		t.Errorf("DefaultImage() = %q, want %q and never :latest", got, want)
	}
}
