// Package dap holds the end-to-end tests and benchmarks of `kloop dap`: a Go DAP client
// that behaves like an editor drives the real binary against a small HTTP server.
package dap
