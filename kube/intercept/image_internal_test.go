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
	if got := DefaultImage(); got != DefaultImageRepository+":"+imageTag(Version) || strings.HasSuffix(got, ":latest") || ValidateImageRef(got) != nil {
		t.Errorf("DefaultImage() = %q, want %s tagged with %s, a valid reference, never :latest", got, DefaultImageRepository, Version)
	}
	tests := []struct{ version, tag string }{
		{"v1.2.3", "v1.2.3"},
		{"v0.0.0-20261207153000-abcdef123456+dirty", "v0.0.0-20261207153000-abcdef123456_dirty"},
		{"devel", "devel"},
		{"", "devel"},
		{"-x", "_x"},
		{strings.Repeat("a", 200), strings.Repeat("a", 128)},
	}
	for _, tt := range tests {
		if got := imageTag(tt.version); got != tt.tag {
			t.Errorf("imageTag(%q) = %q, want %q", tt.version, got, tt.tag)
		}
		if err := ValidateImageRef(DefaultImageRepository + ":" + imageTag(tt.version)); err != nil {
			t.Errorf("version %q gives an invalid reference: %v", tt.version, err)
		}
	}
}
