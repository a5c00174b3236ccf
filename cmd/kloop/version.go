package main

import (
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is set at link time with -ldflags "-X main.version=...".
var version = ""

func kloopVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}

// versionInfo is `kloop version -o json`: what a bug report needs.
type versionInfo struct {
	Version  string `json:"version"`
	Go       string `json:"go"`
	Platform string `json:"platform"`
	// Delve and ClientGo are the versions of the libraries built in.
	Delve    string `json:"delve,omitempty"`
	ClientGo string `json:"clientGo,omitempty"`
}

func currentVersion() versionInfo {
	v := versionInfo{Version: kloopVersion(), Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			switch d.Path {
			case "github.com/go-delve/delve":
				v.Delve = d.Version
			case "k8s.io/client-go":
				v.ClientGo = d.Version
			}
		}
	}
	return v
}

func newVersionCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print kloop's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := currentVersion()
			switch output {
			case "json":
				return writeJSON(cmd.OutOrStdout(), v)
			case "", "text":
				// One line, which editors and scripts parse; -o json has the rest.
				fmt.Fprintln(cmd.OutOrStdout(), "kloop", v.Version)
				return nil
			}
			return fmt.Errorf("-o %q: use json or text", output)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	return cmd
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
