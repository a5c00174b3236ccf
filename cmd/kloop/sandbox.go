//go:build !agentonly

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kloop/kloop/sandbox"
	"github.com/kloop/kloop/sandbox/standin"
)

// newSandboxCmd is `kloop sandbox up|down|status`: a real local control
// plane (see package sandbox) to try kloop without a cluster.
func newSandboxCmd() *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "sandbox",
		Short: "Run a local Kubernetes control plane (kwok) to try kloop without a cluster",
		Long: `Run a real local Kubernetes control plane: kube-apiserver, kube-controller-manager,
kube-scheduler and etcd, with kwok for nodes and pods, on 127.0.0.1.

The binaries are built from the Go module proxy on first use (about 13 minutes on
2 cores) and cached in $XDG_CACHE_HOME/kloop/sandbox; later starts take seconds.`,
	}
	cmd.PersistentFlags().StringVar(&name, "name", sandbox.DefaultName, "cluster name")
	cmd.AddCommand(newSandboxUpCmd(&name), newSandboxDownCmd(&name), newSandboxStatusCmd(&name),
		newSandboxRunCmd(&name), newSandboxBuildCmd(), newSandboxDialCmd())
	return cmd
}

func newSandboxUpCmd(name *string) *cobra.Command {
	var nodes, port int
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Start the sandbox cluster (building its binaries the first time)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := sandbox.Up(cmd.Context(), sandbox.Options{
				Name:          *name,
				Nodes:         nodes,
				APIServerPort: port,
				Progress:      sandbox.ProgressTo(cmd.ErrOrStderr()),
			})
			if err != nil {
				return err
			}
			printSandboxUsage(cmd.OutOrStdout(), c)
			return nil
		},
	}
	cmd.Flags().IntVar(&nodes, "nodes", 1, "number of fake (kwok) nodes")
	cmd.Flags().IntVar(&port, "port", 0, "apiserver port on 127.0.0.1 (0: any free port)")
	return cmd
}

func printSandboxUsage(w io.Writer, c *sandbox.Cluster) {
	state := "is up"
	if c.Reused {
		state = "was already running"
	}
	fmt.Fprintf(w, `Sandbox cluster %q %s at %s.
Kubeconfig: %s

Use it with:
  export KUBECONFIG=%s
then run kloop (or any Kubernetes client) against it: try
  kloop pool create dev --namespaces 3 --default && kloop claim
Stop it with:
  kloop sandbox down --name %s
`, c.Name, state, c.Server, c.Kubeconfig, c.Kubeconfig, c.Name)
}

func newSandboxDownCmd(name *string) *cobra.Command {
	return &cobra.Command{
		Use:   "down",
		Short: "Stop the sandbox cluster and remove its state",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			err := sandbox.Down(cmd.Context(), sandbox.Options{Name: *name})
			if errors.Is(err, sandbox.ErrNoCluster) {
				fmt.Fprintf(cmd.OutOrStdout(), "No sandbox cluster %q is running.\n", *name)
				return nil
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Sandbox cluster %q stopped and removed.\n", *name)
			return nil
		},
	}
}

func newSandboxStatusCmd(name *string) *cobra.Command {
	var output string
	var all bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the sandbox cluster's state, components and kubeconfig",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "" && output != "json" && output != "text" {
				return fmt.Errorf("unknown output format %q: use -o json or -o text", output)
			}
			var list []*sandbox.ClusterStatus
			if all {
				l, err := sandbox.List(cmd.Context(), sandbox.Options{})
				if err != nil {
					return err
				}
				list = l
			} else {
				st, err := sandbox.Status(cmd.Context(), sandbox.Options{Name: *name})
				if errors.Is(err, sandbox.ErrNoCluster) && output != "json" {
					fmt.Fprintf(cmd.OutOrStdout(), "No sandbox cluster %q. Start one with `kloop sandbox up`.\n", *name)
					return nil
				}
				if errors.Is(err, sandbox.ErrNoCluster) {
					return json.NewEncoder(cmd.OutOrStdout()).Encode(map[string]string{"name": *name, "state": "absent"})
				}
				if err != nil {
					return err
				}
				list = []*sandbox.ClusterStatus{st}
			}
			if output == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if all {
					return enc.Encode(list)
				}
				return enc.Encode(list[0])
			}
			for _, st := range list {
				printSandboxStatus(cmd.OutOrStdout(), st)
			}
			if len(list) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "No sandbox clusters.")
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: text or json")
	cmd.Flags().BoolVar(&all, "all", false, "show every sandbox cluster, including the test harness's")
	return cmd
}

func printSandboxStatus(w io.Writer, st *sandbox.ClusterStatus) {
	fmt.Fprintf(w, "Cluster %q: %s\n", st.Name, st.State)
	if st.Problem != "" {
		fmt.Fprintf(w, "  problem:    %s\n", st.Problem)
	}
	if st.Server != "" {
		fmt.Fprintf(w, "  server:     %s\n  nodes:      %d\n", st.Server, st.Nodes)
	}
	if st.Kubeconfig != "" {
		fmt.Fprintf(w, "  kubeconfig: %s  (export KUBECONFIG=%s)\n", st.Kubeconfig, st.Kubeconfig)
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	for _, c := range st.Components {
		state := "running"
		if !c.Running {
			state = "NOT RUNNING, log: " + c.Log
		}
		fmt.Fprintf(tw, "  %s\tpid %d\t%s\n", c.Name, c.PID, state)
	}
	tw.Flush()
}

func newSandboxRunCmd(name *string) *cobra.Command {
	var files, images []string
	var namespace string
	var race bool
	cmd := &cobra.Command{
		Use:   "run [-f MANIFEST]... [--image IMAGE=GO_PACKAGE]...",
		Short: "Run the sandbox's pods as local processes (kwok runs no containers) until interrupted",
		Long: `Create the objects of the given manifests, then run every container of every
Running pod of the sandbox as a local process built with 'go build', until Ctrl-C.
Images "ko://IMPORT/PATH" build that package; map other images with --image.
Run it from the module that holds the packages (your own module, or the kloop
repository for the samples in test/testdata). The kloop agent that intercepts
inject runs as this kloop binary; inside kloop's own module it is built from
source instead (with --race, under the race detector).

A pod becomes Ready once its processes listen and a port-forward through the
apiserver reaches them. Service names resolve in the pods, and a connection to
a Service's port reaches a ready pod at its target port (a number or a
container port's name), as on a cluster.`,
		Example: `  kloop sandbox run -f test/testdata/users.yaml -f test/testdata/orders.yaml`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			self, err := os.Executable()
			if err != nil {
				return err
			}
			table := standin.DefaultImages()
			// Before --image, which may map the agent image too.
			if err := agentFromSelf(table, self); err != nil {
				return err
			}
			for _, m := range images {
				image, pkg, ok := strings.Cut(m, "=")
				if !ok || image == "" || pkg == "" {
					return fmt.Errorf("bad --image %q: use IMAGE=GO_PACKAGE, e.g. ghcr.io/kloop/kloop=github.com/kloop/kloop/cmd/kloop", m)
				}
				table[image] = standin.Image{Package: pkg}
			}
			ctx := cmd.Context()
			opts := sandbox.Options{Name: *name}
			st, err := sandbox.Status(ctx, opts)
			if err != nil {
				return err
			}
			if st.State != sandbox.StateRunning {
				return fmt.Errorf("sandbox cluster %q is %s (%s): restart it with `kloop sandbox up --name %s`", *name, st.State, st.Problem, *name)
			}
			cfg, err := (&sandbox.Cluster{Kubeconfig: st.Kubeconfig}).RESTConfig()
			if err != nil {
				return err
			}
			applyNS := namespace
			if applyNS == "" {
				applyNS = "default"
			}
			if len(files) > 0 {
				if err := sandbox.EnsureNamespace(ctx, cfg, applyNS); err != nil {
					return err
				}
			}
			for _, f := range files {
				data, err := os.ReadFile(f)
				if err != nil {
					return fmt.Errorf("read manifest: %w", err)
				}
				if err := sandbox.Apply(ctx, cfg, applyNS, data); err != nil {
					return fmt.Errorf("apply %s: %w", f, err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "Created the objects of %s in namespace %s.\n", f, applyNS)
			}
			dir, err := sandbox.StandInDir(opts)
			if err != nil {
				return err
			}
			client, dyn, err := sandboxClients(cfg)
			if err != nil {
				return err
			}
			standin.CleanupOrphans()
			standin.Reap(dir)
			// Binaries of this run only: one left by an earlier run would be
			// reused, and the pods would run code from before the last edit.
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return fmt.Errorf("stand-in directory: %w", err)
			}
			buildDir, err := os.MkdirTemp(dir, "bin-")
			if err != nil {
				return fmt.Errorf("stand-in build directory: %w", err)
			}
			defer os.RemoveAll(buildDir)
			out := cmd.ErrOrStderr()
			r, err := standin.Start(ctx, standin.Options{
				Client: client, Dynamic: dyn, Config: cfg, Namespace: namespace, Images: table, Dir: dir, BuildDir: buildDir,
				DialCommand: []string{self, "sandbox", "dial"},
				Logf:        func(format string, args ...any) { fmt.Fprintf(out, format+"\n", args...) },
				Race:        race,
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "Running the pods of %s as local processes (%s networking). Ctrl-C stops them.\n",
				nsLabel(namespace), r.Network())
			<-ctx.Done()
			races := r.Stop()
			standin.Reap(dir)
			fmt.Fprintln(out, "Stopped every stand-in.")
			return races
		},
	}
	cmd.Flags().StringArrayVarP(&files, "filename", "f", nil, "manifest to create first (repeatable)")
	cmd.Flags().StringArrayVar(&images, "image", nil, "IMAGE=GO_PACKAGE: build GO_PACKAGE for containers of IMAGE (repeatable)")
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "", "only this namespace's pods, and where -f creates objects (default: all namespaces; -f into default)")
	cmd.Flags().BoolVar(&race, "race", false, "build the stand-ins with -race; exit non-zero when one reported a data race")
	return cmd
}

// agentFromSelf stands the agent image in with the running kloop binary,
// unless the command runs inside kloop's own module: there `go build` of
// kloop's command works (and --race applies to it), anywhere else it would
// look for kloop's packages in the user's module and fail.
func agentFromSelf(table standin.Images, self string) error {
	wd, err := os.Getwd()
	if err != nil {
		return err
	}
	mod, err := sandbox.ModulePath(wd)
	if err != nil {
		return err
	}
	if mod != sandbox.KloopModule {
		table[standin.AgentImage] = standin.Image{Binary: self}
	}
	return nil
}

func nsLabel(ns string) string {
	if ns == "" {
		return "every namespace"
	}
	return "namespace " + ns
}

// newSandboxDialCmd is the pipe kwok runs inside a pod's network namespace
// for each port-forward connection; not for people.
func newSandboxDialCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "dial ADDRESS",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return standin.Pipe(args[0])
		},
	}
}

func sandboxClients(cfg *rest.Config) (kubernetes.Interface, dynamic.Interface, error) {
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("sandbox client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("sandbox client: %w", err)
	}
	return client, dyn, nil
}

func newSandboxBuildCmd() *cobra.Command {
	var check bool
	cmd := &cobra.Command{
		Use:   "build",
		Short: "Build (or verify) the cached control-plane binaries without starting a cluster",
		Long: `Build kube-apiserver, kube-controller-manager, kube-scheduler, etcd, kwok and kwokctl
into the versioned cache, or verify a cache that exists. CI runs it before the tests
so that no test binary spends its timeout on the first build (about 13 minutes).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := sandbox.DefaultCache()
			if err != nil {
				return err
			}
			if check {
				st := c.Check()
				if !st.Ready {
					return fmt.Errorf("sandbox cache %s is not complete: %s; run `kloop sandbox build`", c.Dir, strings.Join(st.Problems, "; "))
				}
				fmt.Fprintf(cmd.OutOrStdout(), "Sandbox binaries are complete in %s.\n", st.BinDir)
				return nil
			}
			if err := c.Ensure(cmd.Context(), sandbox.ProgressTo(cmd.ErrOrStderr())); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Sandbox binaries are ready in %s.\n", c.BinDir())
			return nil
		},
	}
	cmd.Flags().BoolVar(&check, "check", false, "only check the cache; fail if it is missing, partial or corrupt")
	return cmd
}
