//go:build !agentonly

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"k8s.io/client-go/kubernetes"

	"github.com/kloop/kloop/kube/claim"
	"github.com/kloop/kloop/kube/intercept"
	"github.com/kloop/kloop/kube/kubeconfig"
)

// poolFlags are the cluster connection of the pool admin commands. They talk
// to the cluster directly with the admin's kubeconfig, not through the
// daemon: pools are cluster configuration, not session state.
type poolFlags struct {
	kubeconfig string
	context    string
	namespace  string
}

func (f *poolFlags) admin() (*claim.PoolAdmin, error) {
	cfg, _, err := kubeconfig.LoadRESTConfig(f.kubeconfig, f.context)
	if err != nil {
		return nil, err
	}
	return claim.NewPoolAdmin(cfg, claim.WithNamespace(f.namespace))
}

func newPoolCmd() *cobra.Command {
	f := &poolFlags{}
	cmd := &cobra.Command{
		Use:   "pool",
		Short: "Create, list and delete claim pools (cluster admin)",
		Long: `A pool is a set of slots developers claim with 'kloop claim': namespaces
of this cluster, or other clusters given by kubeconfig. Pools live in the
cluster (namespace kloop-system); apply deploy/claimer-rbac.yaml once first.

These commands use your own kubeconfig (--admin-kubeconfig, else $KUBECONFIG,
else ~/.kube/config) and need cluster-admin rights for create and delete.`,
	}
	cmd.PersistentFlags().StringVar(&f.kubeconfig, "admin-kubeconfig", "", "kubeconfig to reach the cluster with (default $KUBECONFIG or ~/.kube/config)")
	cmd.PersistentFlags().StringVar(&f.context, "context", "", "kubeconfig context to use (default: the current context)")
	cmd.PersistentFlags().StringVar(&f.namespace, "system-namespace", claim.DefaultNamespace, "namespace holding pools and claims")
	cmd.AddCommand(newPoolCreateCmd(f), newPoolListCmd(f), newPoolDeleteCmd(f), newPoolAgentImageCmd(f))
	return cmd
}

func newPoolCreateCmd(f *poolFlags) *cobra.Command {
	var (
		namespaces     int
		kubeconfigs    []string
		isDefault      bool
		residentAgents bool
		agentImage     string
	)
	cmd := &cobra.Command{
		Use:   "create NAME (--namespaces N | --kubeconfig FILE...)",
		Short: "Create a pool of N new namespaces, or of the clusters of kubeconfig files",
		Example: `  kloop pool create dev --namespaces 5
  kloop pool create clusters --kubeconfig a.yaml --kubeconfig b.yaml`,
		Args: poolNameArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			nsSet := cmd.Flags().Changed("namespaces")
			if nsSet == (len(kubeconfigs) > 0) {
				return errors.New("give exactly one of --namespaces N (slots are new namespaces of this cluster) or --kubeconfig FILE... (slots are other clusters)")
			}
			if agentImage != "" {
				// Checked before the pool exists, so a typo costs nothing.
				if err := intercept.ValidateImageRef(agentImage); err != nil {
					return fmt.Errorf("--agent-image: %w", err)
				}
			}
			a, err := f.admin()
			if err != nil {
				return err
			}
			opts := claim.CreateOptions{Default: isDefault, ResidentAgents: residentAgents, Progress: poolProgress(cmd.ErrOrStderr())}
			var p *claim.Pool
			if nsSet {
				p, err = a.CreateNamespacePool(cmd.Context(), name, namespaces, opts)
			} else {
				slots := make([]claim.KubeconfigSlot, len(kubeconfigs))
				for i, path := range kubeconfigs {
					slots[i] = claim.KubeconfigSlot{Path: path}
				}
				p, err = a.CreateKubeconfigPool(cmd.Context(), name, slots, opts)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "pool %s created with %d slots\n", p.Name, len(p.Slots))
			if agentImage != "" {
				return f.setAgentImage(cmd, agentImage)
			}
			return nil
		},
	}
	cmd.Flags().IntVar(&namespaces, "namespaces", 0, "number of namespace slots to create (named NAME-1 ... NAME-N)")
	// Local to create, --kubeconfig names slot clusters, as in the issue's
	// syntax; the admin's own kubeconfig is --admin-kubeconfig here.
	cmd.Flags().StringArrayVar(&kubeconfigs, "kubeconfig", nil, "kubeconfig file of a slot cluster (its current context); repeat for more")
	cmd.Flags().BoolVar(&isDefault, "default", false, "make this the pool 'kloop claim' uses without --pool")
	cmd.Flags().BoolVar(&residentAgents, "resident-agents", false, "intercepts in the pool's namespaces leave the agent resident, as kloop agent install does: after the first, intercepts restart no pod")
	cmd.Flags().StringVar(&agentImage, "agent-image", "", "also set the cluster's agent image to `REF`, as kloop pool agent-image REF does")
	return cmd
}

// newPoolAgentImageCmd sets or shows the agent image of the cluster. It
// lives with the pool commands because it is the same kind of once-per-
// cluster admin setting, kept in the same namespace.
func newPoolAgentImageCmd(f *poolFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "agent-image [REF]",
		Short: "Set (or show) the kloop agent image every developer's intercept injects on this cluster",
		Long: `Records REF in ConfigMap kloop-config (key agentImage) of namespace
kloop-system and lets every authenticated user read that ConfigMap. Without
REF, prints the image set now. A workspace's .kloop.yaml agentImage, and
KLOOP_AGENT_IMAGE in a daemon's environment, override it; without any, kloop
injects ghcr.io/kloop/agent tagged with its own version.`,
		Example: `  kloop pool agent-image registry.example.com/kloop/agent:v1.2.3`,
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				return f.setAgentImage(cmd, args[0])
			}
			cs, err := f.client()
			if err != nil {
				return err
			}
			ref, err := intercept.ClusterImage(cmd.Context(), cs)
			if err != nil {
				return err
			}
			if ref == "" {
				fmt.Fprintf(cmd.OutOrStdout(), "no agent image set on this cluster; kloop injects %s (set one with: kloop pool agent-image REF)\n", intercept.DefaultImage())
				return nil
			}
			fmt.Fprintln(cmd.OutOrStdout(), ref)
			return nil
		},
	}
	cmd.Flags().StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig to reach the cluster with (same as --admin-kubeconfig)")
	return cmd
}

func (f *poolFlags) client() (kubernetes.Interface, error) {
	cfg, _, err := kubeconfig.LoadRESTConfig(f.kubeconfig, f.context)
	if err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("client for %s: %w", cfg.Host, err)
	}
	return cs, nil
}

func (f *poolFlags) setAgentImage(cmd *cobra.Command, ref string) error {
	if err := intercept.ValidateImageRef(ref); err != nil {
		return err
	}
	cs, err := f.client()
	if err != nil {
		return err
	}
	if err := intercept.SetClusterImage(cmd.Context(), cs, ref); err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "agent image of this cluster set to %s (ConfigMap %s/%s)\n", ref, intercept.ConfigNamespace, intercept.ConfigMapName)
	return nil
}

func newPoolListCmd(f *poolFlags) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List pools, their slots, holders and until when",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "" && output != "json" && output != "table" {
				return fmt.Errorf("-o %q: use json or table", output)
			}
			a, err := f.admin()
			if err != nil {
				return err
			}
			pools, err := a.List(cmd.Context())
			if err != nil {
				return err
			}
			if output == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if pools == nil {
					pools = []claim.PoolStatus{}
				}
				return enc.Encode(pools)
			}
			return writePoolTable(cmd.OutOrStdout(), pools)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	cmd.Flags().StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig to reach the cluster with (same as --admin-kubeconfig)")
	return cmd
}

func writePoolTable(w io.Writer, pools []claim.PoolStatus) error {
	if len(pools) == 0 {
		_, err := fmt.Fprintln(w, "no pools; create one with: kloop pool create NAME --namespaces N")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "POOL\tSLOT\tKIND\tTARGET\tHOLDER\tUNTIL")
	for _, p := range pools {
		name := p.Name
		if p.Default {
			name += " (default)"
		}
		if p.ResidentAgents {
			name += " (resident agents)"
		}
		for _, s := range p.Slots {
			holder, until := "-", "-"
			if !s.Free {
				holder = s.Holder
				until = s.Until.Local().Format(time.DateTime)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", name, s.Name, s.Kind, s.Target, holder, until)
		}
	}
	return tw.Flush()
}

func newPoolDeleteCmd(f *poolFlags) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a pool, its slot namespaces or Secrets, and its claims",
		Args:  poolNameArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			a, err := f.admin()
			if err != nil {
				return err
			}
			if err := a.Delete(cmd.Context(), args[0], force, poolProgress(cmd.ErrOrStderr())); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "pool %s deleted\n", args[0])
			return nil
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "delete even while slots are held")
	cmd.Flags().StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig to reach the cluster with (same as --admin-kubeconfig)")
	return cmd
}

func poolNameArg(cmd *cobra.Command, args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("%s takes exactly one pool name, got %d arguments", cmd.CommandPath(), len(args))
	}
	return claim.ValidatePoolName(args[0])
}

func poolProgress(w io.Writer) func(string) {
	return func(msg string) { fmt.Fprintln(w, msg) }
}
