package doctor

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// registryLookup is what the registry said of the agent image reference.
type registryLookup struct {
	status string // OK, Warn (no answer from here) or Fail (it has no such image)
	detail string
}

// checkRegistry asks the image's registry for its manifest, with the
// credentials docker and podman logins left on this machine. This machine
// is not the cluster's nodes: a registry unreachable from here is only a
// warning, but one that answers "no such image" fails, since no node could
// pull it either.
func checkRegistry(ctx context.Context, ref string) registryLookup {
	r, err := name.ParseReference(ref)
	if err != nil {
		return registryLookup{Fail, fmt.Sprintf("%q is not an image reference: %v", ref, err)}
	}
	desc, err := remote.Head(r, remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain))
	if err == nil {
		return registryLookup{OK, fmt.Sprintf("the registry has it (%s)", desc.Digest)}
	}
	var te *transport.Error
	if errors.As(err, &te) {
		switch te.StatusCode {
		case http.StatusNotFound:
			return registryLookup{Fail, fmt.Sprintf("the registry %s has no such image", r.Context().RegistryStr())}
		case http.StatusUnauthorized, http.StatusForbidden:
			return registryLookup{Warn, fmt.Sprintf("the registry %s refused this machine's credentials (%d); the nodes may have their own (imagePullSecrets)", r.Context().RegistryStr(), te.StatusCode)}
		}
	}
	return registryLookup{Warn, fmt.Sprintf("could not ask the registry %s from this machine: %v", r.Context().RegistryStr(), err)}
}
