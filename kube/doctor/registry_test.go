package doctor

import (
	"context"
	"net"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// A real registry server on loopback (go-containerregistry's): an image it
// has is OK with its digest, one it lacks fails, and a registry that does
// not answer is only a warning (the nodes may reach what this machine
// cannot).
func TestCheckRegistry(t *testing.T) {
	srv := httptest.NewServer(registry.New())
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	pushed := host + "/kloop/agent:v1.2.3"
	tag, err := name.NewTag(pushed)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(tag, img); err != nil {
		t.Fatal(err)
	}
	digest, _ := img.Digest()

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()

	for _, tc := range []struct {
		name, ref, status, detail string
	}{
		{"pushed", pushed, OK, digest.String()},
		{"tag never pushed", host + "/kloop/agent:v9.9.9", Fail, "has no such image"},
		{"repository never pushed", host + "/other/agent:v1.2.3", Fail, "has no such image"},
		{"no registry answers", closed + "/kloop/agent:v1.2.3", Warn, "could not ask the registry"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := checkRegistry(context.Background(), tc.ref)
			if got.status != tc.status || !strings.Contains(got.detail, tc.detail) {
				t.Errorf("checkRegistry(%s) = %s %q; want %s with %q", tc.ref, got.status, got.detail, tc.status, tc.detail)
			}
		})
	}
}
