// Command gen writes the JSON Schema of .kloop.yaml, generated from the types
// of package config. It is run by `go generate ./config`.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/kloop/kloop/config"
)

func main() {
	out := flag.String("o", config.SchemaFile, "file to write the schema to")
	flag.Parse()
	if err := write(*out); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func write(path string) error {
	b, err := config.Schema()
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("write schema: %w", err)
	}
	return nil
}
