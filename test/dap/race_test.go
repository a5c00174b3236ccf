//go:build race

package dap

// With -race the kloop binary under test is built with the race detector too, so the
// bridge's concurrency is checked, not only this client's.
func init() { kloopBuildFlags = append(kloopBuildFlags, "-race") }
