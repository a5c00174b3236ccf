// Package faults_test injects faults into the kloop loop on the sandbox
// cluster (kill -9 of the daemon, a debug worker, an agent, a port-forward)
// and checks kloop's security promises (file modes, tokens, secrets in
// logs, loopback-only listeners), all through the real binary.
package faults_test

import (
	"testing"

	"github.com/kloop/kloop/test/cluster"
	"github.com/kloop/kloop/test/editor"
	"github.com/kloop/kloop/test/orders"
)

func TestMain(m *testing.M) { cluster.Main(m) }

// kloop is built once per test binary.
var kloopBinary = editor.NewBinary("kloop-faults-test-bin")

func binary(t testing.TB) string { return kloopBinary.Path(t) }

// fixture is the orders sample in a test namespace (see test/orders); the
// suite adds its own helpers as methods.
type fixture struct{ *orders.Fixture }

func newFixture(t *testing.T) *fixture { return &fixture{orders.New(t, binary(t))} }

type ordersAnswer = orders.Answer

var (
	ordersSource = orders.Source
	eventually   = orders.Eventually
	pidAlive     = orders.PidAlive
)
