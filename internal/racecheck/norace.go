//go:build !race

package racecheck

// Enabled is false: this binary was built without -race.
const Enabled = false
