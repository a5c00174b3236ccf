package sandbox

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// States of a cluster as Status reports them.
const (
	// StateRunning: every component runs and the apiserver is ready.
	StateRunning = "running"
	// StateDegraded: some components run, but not all, or the apiserver is not ready.
	StateDegraded = "degraded"
	// StateStopped: files exist but no component runs (a reboot, or a killed run).
	StateStopped = "stopped"
)

// ComponentStatus is one control-plane process.
type ComponentStatus struct {
	Name    string `json:"name"`
	PID     int    `json:"pid"`
	Running bool   `json:"running"`
	Log     string `json:"log"`
}

// ClusterStatus describes a cluster for `kloop sandbox status`.
type ClusterStatus struct {
	Name       string            `json:"name"`
	State      string            `json:"state"`
	Kubeconfig string            `json:"kubeconfig,omitempty"`
	Context    string            `json:"context,omitempty"`
	Server     string            `json:"server,omitempty"`
	Nodes      int               `json:"nodes"`
	Components []ComponentStatus `json:"components"`
	OwnerPID   int               `json:"ownerPid,omitempty"`
	Created    time.Time         `json:"created,omitzero"`
	// Problem says what is wrong when State is not running.
	Problem string `json:"problem,omitempty"`

	problem string
}

func (s *ClusterStatus) cluster(l layout) *Cluster {
	return &Cluster{Name: s.Name, Kubeconfig: s.Kubeconfig, Context: s.Context, Server: s.Server, Workdir: l.workdir}
}

// Status inspects the named cluster: its processes, the apiserver's
// readiness (bounded to a few seconds) and its node count.
func Status(ctx context.Context, opts Options) (*ClusterStatus, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	l := newLayout(opts.StateDir, opts.Name)
	if !l.exists() {
		return nil, fmt.Errorf("%w %q (in %s): start one with `kloop sandbox up`", ErrNoCluster, opts.Name, opts.StateDir)
	}
	return inspect(ctx, l), nil
}

// List reports every cluster under the state directory.
func List(ctx context.Context, opts Options) ([]*ClusterStatus, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	names := map[string]bool{}
	for _, dir := range []string{filepath.Join(opts.StateDir, "clusters"), filepath.Join(opts.StateDir, "kwok", "clusters")} {
		entries, err := os.ReadDir(dir)
		if err != nil && !os.IsNotExist(err) {
			return nil, fmt.Errorf("list sandbox clusters: %w", err)
		}
		for _, e := range entries {
			if e.IsDir() {
				names[e.Name()] = true
			}
		}
	}
	var out []*ClusterStatus
	for name := range names {
		out = append(out, inspect(ctx, newLayout(opts.StateDir, name)))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func inspect(ctx context.Context, l layout) *ClusterStatus {
	st := &ClusterStatus{Name: l.name, Context: l.contextName()}
	if o, ok := readOwner(l); ok {
		st.OwnerPID, st.Created = o.PID, o.Created
		if o.gone() {
			st.problem = fmt.Sprintf("its owner process %d has exited", o.PID)
		}
	}
	running := 0
	for name, pid := range componentPIDs(l) {
		c := ComponentStatus{Name: name, PID: pid, Running: processAlive(pid), Log: filepath.Join(l.workdir, "logs", name+".log")}
		if c.Running {
			running++
		}
		st.Components = append(st.Components, c)
	}
	sort.Slice(st.Components, func(i, j int) bool { return st.Components[i].Name < st.Components[j].Name })
	switch {
	case running == 0:
		st.State = StateStopped
		if st.problem == "" {
			st.problem = "no component is running"
		}
	case running < len(st.Components) || len(st.Components) < 5:
		st.State = StateDegraded
		if dead := deadComponents(l); len(dead) > 0 && st.problem == "" {
			st.problem = strings.Join(dead, ", ") + " not running"
		}
	default:
		st.State = StateRunning
	}
	if _, err := os.Stat(l.kubeconfig); err == nil {
		st.Kubeconfig = l.kubeconfig
	}
	if st.State != StateStopped && st.Kubeconfig != "" {
		if err := probe(ctx, st); err != nil {
			st.State = StateDegraded
			if st.problem == "" {
				st.problem = err.Error()
			}
		}
	} else if st.Kubeconfig == "" && st.problem == "" {
		st.State = StateDegraded
		st.problem = "no kubeconfig was written (start was interrupted)"
	}
	st.Problem = st.problem
	return st
}

// probe asks the apiserver for readiness and the node count.
func probe(ctx context.Context, st *ClusterStatus) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", st.Kubeconfig)
	if err != nil {
		return fmt.Errorf("kubeconfig %s: %w", st.Kubeconfig, err)
	}
	st.Server = cfg.Host
	cfg.Timeout = 3 * time.Second
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	body, err := client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
	if err != nil || string(body) != "ok" {
		return fmt.Errorf("apiserver %s is not ready: %v", cfg.Host, err)
	}
	nodes, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list nodes: %w", err)
	}
	st.Nodes = len(nodes.Items)
	return nil
}
