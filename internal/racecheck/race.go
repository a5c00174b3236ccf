//go:build race

package racecheck

// Enabled is true: this binary was built with -race.
const Enabled = true
