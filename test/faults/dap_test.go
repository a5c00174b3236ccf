package faults_test

import (
	"testing"

	"github.com/kloop/kloop/test/dapclient"
)

// startDAP runs `kloop dap` in the workspace with the fixture's daemon.
func startDAP(t testing.TB, f *fixture) *dapclient.Client {
	t.Helper()
	cmd := f.Daemon.Command(t.Context(), "dap")
	cmd.Dir = f.WS
	return dapclient.Start(t, cmd)
}
