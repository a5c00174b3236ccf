package intercept

import (
	"errors"
	"slices"
	"testing"

	"github.com/kloop/kloop/agent/tunnel"
	"github.com/kloop/kloop/kube/workload"
)

// A mirror holder's record routes only the HTTP ports (naming a tcp one is
// refused), and it overlaps anyone: a global steal, the same rule, another
// global mirror; two steal holders still collide as before.
func TestMirrorHolderCollidesWithNobody(t *testing.T) {
	w := workload.Workload{Kind: workload.StatefulSet, Name: "ledger"}
	ports := []PortRecord{{Port: 8080, Protocol: tunnel.ProtoHTTP}, {Port: 5432, Protocol: tunnel.ProtoTCP}}
	mirror, err := holderRule(Spec{Workload: w, Holder: "alice@laptop", Mirror: true}, "users", ports)
	if err != nil {
		t.Fatal(err)
	}
	if !mirror.Mirror || !slices.Equal(mirror.Ports, []int{8080}) {
		t.Errorf("mirror record %+v; want mirror on port 8080 only", mirror)
	}
	_, err = holderRule(Spec{Workload: w, Holder: "alice@laptop", Mirror: true, Ports: []string{"5432"}}, "users", ports)
	var np *NoPortError
	if !errors.As(err, &np) {
		t.Errorf("mirror naming a tcp port: %v; want a NoPortError", err)
	}

	globalSteal, err := holderRule(Spec{Workload: w, Holder: "bob@desk"}, "users", ports)
	if err != nil {
		t.Fatal(err)
	}
	header := &tunnel.HeaderMatch{Name: "x-dev", Value: "carol"}
	personal, err := holderRule(Spec{Workload: w, Holder: "carol@box", Header: header}, "users", ports)
	if err != nil {
		t.Fatal(err)
	}
	personalMirror, err := holderRule(Spec{Workload: w, Holder: "dan@box", Header: header, Mirror: true}, "users", ports)
	if err != nil {
		t.Fatal(err)
	}
	for _, pair := range [][2]HolderRecord{{mirror, globalSteal}, {globalSteal, mirror}, {mirror, personal}, {personalMirror, personal}, {mirror, mirror}} {
		if err := collision(w, pair[0], pair[1]); err != nil {
			t.Errorf("collision(%+v, %+v) = %v; want none: a mirror takes no requests", pair[0], pair[1], err)
		}
	}
	if err := collision(w, personal, globalSteal); err == nil {
		t.Error("a personal steal beside a global steal: no collision; want one")
	}
}
