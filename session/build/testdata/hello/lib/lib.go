// Package lib is not a main package: building it must be refused.
package lib

// Answer is here so the package has something in it.
func Answer() int { return 42 }
