package cluster

import (
	"io"
	"log"
	"net"
	"net/http"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/kloop/kloop/sandbox/standin"
)

// Registry is a real OCI distribution registry (go-containerregistry's
// pkg/registry, blobs in memory) serving on 127.0.0.1 for one test: what
// `kloop agent-image push` pushes to and stand-ins pull from. Loopback
// registries are spoken to over plain HTTP, as go-containerregistry and
// kubelets do for localhost.
type Registry struct {
	// Host is "127.0.0.1:PORT", the registry part of its references.
	Host string
}

// StartRegistry starts a registry that stops when t ends.
func StartRegistry(t testing.TB) *Registry {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("registry listener: %v", err)
	}
	srv := &http.Server{Handler: registry.New(registry.Logger(discardLogger()))}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return &Registry{Host: l.Addr().String()}
}

// WithRegistry makes the stand-ins pull the images of r and run them (the
// image's entrypoint binary, extracted) instead of looking them up in the
// Images table; check vets each pulled image's config (agentimage.Verify
// for the agent image), nil accepts any.
func WithRegistry(r *Registry, check func(*v1.ConfigFile) error) StandInOption {
	return func(o *standin.Options) {
		o.Pull.Registries = append(o.Pull.Registries, r.Host)
		o.Pull.Check = check
	}
}

func discardLogger() *log.Logger { return log.New(io.Discard, "", 0) }
