package session

import (
	"context"
)

// WorkloadEngine lists the workloads of a namespace for the editors'
// pickers. engines.Intercepts implements it on kube/intercept.
type WorkloadEngine interface {
	Workloads(ctx context.Context, target Target) (*WorkloadsResult, error)
}

// WorkloadsArgs are the arguments of kloop.workloads / `kloop workloads`:
// none, since the namespace is the session's target.
type WorkloadsArgs struct{}

// Validate implements command.Args.
func (WorkloadsArgs) Validate() error { return nil }

// WorkloadsResult is the Deployments and StatefulSets of the session's
// target namespace.
type WorkloadsResult struct {
	Namespace string         `json:"namespace"`
	Workloads []WorkloadInfo `json:"workloads"`
}

// WorkloadInfo is one workload as a picker shows it.
type WorkloadInfo struct {
	// Workload is deployment/NAME or statefulset/NAME, as every command
	// takes it.
	Workload string `json:"workload"`
	Kind     string `json:"kind"`
	Name     string `json:"name"`
	// Ready and Replicas are the ready and the desired replicas.
	Ready    int            `json:"ready"`
	Replicas int            `json:"replicas"`
	Ports    []WorkloadPort `json:"ports"`
	// Agent is set when a kloop agent is in the workload.
	Agent *WorkloadAgent `json:"agent,omitempty"`
}

// WorkloadPort is one container port of the workload's app containers.
type WorkloadPort struct {
	Container string `json:"container"`
	Port      int    `json:"port"`
	Name      string `json:"name,omitempty"`
	Protocol  string `json:"protocol"`
}

// WorkloadAgent says who intercepts through the workload's agent.
type WorkloadAgent struct {
	// Resident agents stay when the last holder leaves (kloop agent
	// install).
	Resident bool `json:"resident,omitempty"`
	// Holders are the developers intercepting it (user@host), each with
	// their rule when it is personal.
	Holders []WorkloadHolder `json:"holders"`
	// Error is set when kloop's record on the workload does not read.
	Error string `json:"error,omitempty"`
}

// WorkloadHolder is one intercept of the workload.
type WorkloadHolder struct {
	Name string `json:"name"`
	// Rule is the personal rule (such as x-dev=me); "" for a global
	// intercept.
	Rule string `json:"rule,omitempty"`
}

// Workloads lists the workloads of the session's target: the claimed
// namespace, else the kubeconfig context's.
func (s *Session) Workloads(ctx context.Context, _ WorkloadsArgs) (*WorkloadsResult, error) {
	engine := s.mgr.opts.Engines.Workloads
	if engine == nil {
		return nil, errNoEngine("workload")
	}
	_, target, err := s.configAndTarget()
	if err != nil {
		return nil, err
	}
	return engine.Workloads(ctx, target)
}
