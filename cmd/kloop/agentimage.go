//go:build !agentonly

package main

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime/debug"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/spf13/cobra"

	"github.com/kloop/kloop/internal/agentimage"
)

// newAgentImageCmd is `kloop agent-image push REF`: the agent image built
// from kloop's source by this binary and published, for clusters that
// cannot pull the project's own.
func newAgentImageCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "agent-image",
		Short: "Build and publish the traffic-agent image (cluster admin)",
	}
	cmd.AddCommand(newAgentImagePushCmd())
	return cmd
}

// pushOutput is `kloop agent-image push -o json`.
type pushOutput struct {
	Ref       string   `json:"ref"`
	Digest    string   `json:"digest"`
	Pinned    string   `json:"pinned"`
	Platforms []string `json:"platforms"`
	Version   string   `json:"version"`
}

func newAgentImagePushCmd() *cobra.Command {
	var (
		version, source, module, output string
		platforms                       []string
	)
	cmd := &cobra.Command{
		Use:   "push REF",
		Short: "Build the agent image for linux/amd64 and linux/arm64 and push it to REF",
		Long: `Builds the kloop traffic agent (kloop agent) from kloop's source with the
Go toolchain, once per platform, assembles a multi-platform OCI image index
without Docker, and pushes it to REF (REGISTRY/REPOSITORY[:TAG]). Without a
tag, the tag is the kloop version: a cluster's kloop injects the agent of its
own version, so never 'latest' unless you write it.

The source is --source, else the kloop checkout around the working directory,
else (a kloop installed with 'go install ...@VERSION') the kloop module at that
version, fetched by the go command like 'go install' does, or --module VERSION;
'go' must be on PATH. The same source, version and Go toolchain give the same
digest (timestamps are $SOURCE_DATE_EPOCH, else 1970). Credentials are docker's
(~/.docker/config.json and its credential helpers); loopback registries are
spoken to over plain HTTP.

Prints the digest and the reference to configure, pinned to that digest.`,
		Example: `  kloop agent-image push ghcr.io/acme/kloop-agent
  kloop agent-image push 127.0.0.1:5000/kloop/agent:v0.3.0 --source ~/src/kloop`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return fmt.Errorf("want one image reference, e.g. kloop agent-image push ghcr.io/acme/kloop-agent (got %d arguments)", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "" && output != "json" && output != "text" {
				return fmt.Errorf("-o %q: want text or json", output)
			}
			if version == "" {
				if v := kloopVersion(); v != "devel" {
					version = v
				} else {
					return fmt.Errorf("this kloop is a development build with no version: pass --version V (linked into the agent and used as the tag)")
				}
			}
			ref, err := agentimage.ParseRef(args[0], version)
			if err != nil {
				return err
			}
			var plats []v1.Platform
			for _, p := range platforms {
				plat, err := v1.ParsePlatform(p)
				if err != nil || plat.OS == "" || plat.Architecture == "" {
					return fmt.Errorf("--platform %q: want OS/ARCH such as linux/arm64", p)
				}
				plats = append(plats, *plat)
			}
			switch {
			case source != "" && module != "":
				return fmt.Errorf("--source and --module both name the source: pass one")
			case source != "":
				if _, err := agentimage.FindSource(source); err != nil {
					return fmt.Errorf("--source: %w", err)
				}
			case module == "":
				wd, err := os.Getwd()
				if err != nil {
					return err
				}
				var findErr error
				if source, findErr = agentimage.FindSource(wd); findErr != nil {
					// Installed with go install: its own module, as the go command fetches it.
					if module = installedVersion(); module == "" {
						return fmt.Errorf("the agent is built from kloop's source: %w (this kloop was not installed from a module version; pass --source DIR of a kloop checkout or --module VERSION)", findErr)
					}
				}
			}
			bins, err := os.MkdirTemp("", "kloop-agent-image-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(bins)
			stderr := cmd.ErrOrStderr()
			res, err := agentimage.Push(cmd.Context(), agentimage.PushOptions{
				BuildOptions: agentimage.BuildOptions{Source: source, ModuleVersion: module, Version: version, Dir: bins},
				Ref:          ref,
				Platforms:    plats,
				Progress:     func(s string) { fmt.Fprintln(stderr, s) },
			})
			if err != nil {
				return err
			}
			out := pushOutput{Ref: res.Ref.String(), Digest: res.Digest.String(), Pinned: res.Pinned(), Version: version}
			for _, p := range res.Platforms {
				out.Platforms = append(out.Platforms, p.String())
			}
			w := cmd.OutOrStdout()
			if output == "json" {
				enc := json.NewEncoder(w)
				enc.SetIndent("", "  ")
				return enc.Encode(out)
			}
			fmt.Fprintf(w, "pushed %s\n  digest     %s\n  platforms  %s\n\nConfigure it (the daemon's environment):\n  KLOOP_AGENT_IMAGE=%s\n",
				out.Ref, out.Digest, strings.Join(out.Platforms, ", "), out.Pinned)
			return nil
		},
	}
	cmd.Flags().StringVar(&version, "version", "", "version linked into the agent and used as the default tag (default: this kloop's version)")
	cmd.Flags().StringVar(&source, "source", "", "kloop checkout to build from (default: the one around the working directory)")
	cmd.Flags().StringVar(&module, "module", "", "build "+agentimage.MainModule+"@VERSION as the go command fetches it (GOPROXY) instead of a checkout (default outside a checkout: the version this kloop was installed at)")
	cmd.Flags().StringSliceVar(&platforms, "platform", []string{"linux/amd64", "linux/arm64"}, "platforms of the image index")
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: text or json")
	return cmd
}

// installedVersion is the module version this kloop was built at by
// `go install github.com/kloop/kloop/cmd/kloop@VERSION`; "" for a build
// from a checkout.
func installedVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok || bi.Main.Path != agentimage.MainModule || bi.Main.Version == "" || bi.Main.Version == "(devel)" {
		return ""
	}
	return bi.Main.Version
}
