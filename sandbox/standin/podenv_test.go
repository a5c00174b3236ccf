package standin

import (
	"reflect"
	"testing"
)

func TestExpand(t *testing.T) {
	vars := map[string]string{"A": "alpha", "B": "beta", "EMPTY": ""}
	lookup := func(n string) (string, bool) { v, ok := vars[n]; return v, ok }
	tests := []struct{ in, want string }{
		{"plain", "plain"},
		{"$(A)", "alpha"},
		{"x-$(A)-$(B)-y", "x-alpha-beta-y"},
		{"$(UNDEFINED)", "$(UNDEFINED)"},
		{"$$(A)", "$(A)"},
		{"$$$(A)", "$alpha"},
		{"$(EMPTY)x", "x"},
		{"$(A", "$(A"},
		{"$A", "$A"},
		{"cost: 5$", "cost: 5$"},
		{"$()", "$()"},
	}
	for _, tt := range tests {
		if got := expand(tt.in, lookup); got != tt.want {
			t.Errorf("expand(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestPortRewriterOnlyInLoopbackMode(t *testing.T) {
	loop := portRewriter(&podNetwork{ip: "127.0.0.1", ports: map[int32]int32{8080: 41000, 9090: 41001}})
	tests := []struct{ in, want string }{
		{":8080", "127.0.0.1:41000"},
		{"0.0.0.0:9090", "127.0.0.1:41001"},
		{"--listen=localhost:8080", "--listen=127.0.0.1:41000"},
		{"http://127.0.0.1:8080/x", "http://127.0.0.1:41000/x"},
		{"http://users:8080", "http://users:8080"},
		{":80801", ":80801"},
		{"10.0.0.1:8080", "10.0.0.1:8080"},
	}
	for _, tt := range tests {
		if got := loop(tt.in); got != tt.want {
			t.Errorf("loopback rewrite(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	ns := portRewriter(&podNetwork{netns: "kloop-x-2", ip: "10.213.0.2", ports: map[int32]int32{8080: 8080}})
	if got := ns(":8080"); got != ":8080" {
		t.Errorf("netns mode rewrote %q", got)
	}
}

func TestImageLookup(t *testing.T) {
	images := Images{"ghcr.io/kloop/kloop": {Package: "example.com/agent"}, "exact:1.0": {Binary: "/bin/true"}}
	tests := []struct {
		image string
		want  Image
		ok    bool
	}{
		{"ghcr.io/kloop/kloop:v1.2.3", Image{Package: "example.com/agent"}, true},
		{"ghcr.io/kloop/kloop@sha256:abcd", Image{Package: "example.com/agent"}, true},
		{"exact:1.0", Image{Binary: "/bin/true"}, true},
		{"ko://github.com/kloop/kloop/test/testdata/users", Image{Package: "github.com/kloop/kloop/test/testdata/users"}, true},
		{"localhost:5000/other", Image{}, false},
	}
	for _, tt := range tests {
		got, ok := images.lookup(tt.image)
		if ok != tt.ok || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("lookup(%q) = %+v, %v; want %+v, %v", tt.image, got, ok, tt.want, tt.ok)
		}
	}
}
