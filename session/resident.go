package session

import (
	"context"
	"fmt"

	"github.com/kloop/kloop/config"
	"github.com/kloop/kloop/kube/workload"
)

// AgentEngine installs the traffic agent into workloads to stay: a
// resident agent, dormant until someone intercepts, so that intercepts
// and leaves are messages over the tunnel, not rollouts. engines.Intercepts
// implements it on kube/intercept.
type AgentEngine interface {
	// InstallAgent injects a resident agent into req.Workload (or makes
	// the intercept's agent already there resident) and waits for the
	// rollout.
	InstallAgent(ctx context.Context, req AgentInstallRequest, p Progress) (*AgentInstallResult, error)
	// UninstallAgent removes workload's resident agent exactly, refusing
	// while anyone intercepts through it.
	UninstallAgent(ctx context.Context, target Target, workload string, p Progress) error
}

// AgentInstallRequest is one resident agent to install.
type AgentInstallRequest struct {
	Target   Target
	Workload string // deployment/NAME or statefulset/NAME
	// Ports are container ports (number or name); empty means every port
	// a Service targets.
	Ports []string
	// AgentImage is the workspace's agentImage, as for an intercept.
	AgentImage string
}

// AgentInstallArgs are the arguments of kloop.agent.install / `kloop agent
// install`.
type AgentInstallArgs struct {
	Workload string `json:"workload"`
	// Ports are the container ports the agent takes, by number or name;
	// empty means every port a Service targets.
	Ports []string `json:"ports,omitempty"`
}

// ProgressTitle names the workload in the progress report.
func (a AgentInstallArgs) ProgressTitle() string {
	return "Installing the kloop agent into " + a.Workload
}

// Validate checks the workload and the ports.
func (a AgentInstallArgs) Validate() error {
	if err := validateWorkload(a.Workload); err != nil {
		return err
	}
	for _, p := range a.Ports {
		if p == "" {
			return fmt.Errorf("port \"\": give a container port's number or name, e.g. 8080 or http")
		}
	}
	return nil
}

// AgentUninstallArgs are the arguments of kloop.agent.uninstall.
type AgentUninstallArgs struct {
	Workload string `json:"workload"`
}

// ProgressTitle names the workload in the progress report.
func (a AgentUninstallArgs) ProgressTitle() string {
	return "Removing the kloop agent from " + a.Workload
}

// Validate checks the workload.
func (a AgentUninstallArgs) Validate() error { return validateWorkload(a.Workload) }

func validateWorkload(w string) error {
	if w == "" {
		return fmt.Errorf("workload is required, e.g. deployment/orders")
	}
	_, err := workload.Parse(w)
	return err
}

// AgentInstallResult says what the install did.
type AgentInstallResult struct {
	Workload string `json:"workload"`
	// Ports are the container ports the agent takes.
	Ports []int  `json:"ports"`
	Image string `json:"image"`
	// Existing: the workload carried an intercept's agent, which now
	// stays; no pod restarted.
	Existing bool `json:"existing,omitempty"`
}

// InstallAgent installs a resident agent into a workload of the session's
// target (the claimed namespace, else the kubeconfig's).
func (s *Session) InstallAgent(ctx context.Context, args AgentInstallArgs, p Progress) (*AgentInstallResult, error) {
	engine := s.mgr.opts.Engines.Agents
	if engine == nil {
		return nil, errNoEngine("agent")
	}
	w, err := workload.Parse(args.Workload)
	if err != nil {
		return nil, err
	}
	cfg, target, err := s.configAndTarget()
	if err != nil {
		return nil, err
	}
	return engine.InstallAgent(ctx, AgentInstallRequest{Target: target, Workload: w.String(), Ports: args.Ports, AgentImage: cfg.AgentImage}, p)
}

// UninstallAgent removes a workload's resident agent.
func (s *Session) UninstallAgent(ctx context.Context, args AgentUninstallArgs, p Progress) error {
	engine := s.mgr.opts.Engines.Agents
	if engine == nil {
		return errNoEngine("agent")
	}
	w, err := workload.Parse(args.Workload)
	if err != nil {
		return err
	}
	_, target, err := s.configAndTarget()
	if err != nil {
		return err
	}
	return engine.UninstallAgent(ctx, target, w.String(), p)
}

// configAndTarget reads .kloop.yaml and the target under the session's
// operation lock, as Env does.
func (s *Session) configAndTarget() (*config.Config, Target, error) {
	cfg, err := s.loadConfig()
	if err != nil {
		return nil, Target{}, err
	}
	s.opMu.Lock()
	defer s.opMu.Unlock()
	target, err := s.target(cfg)
	return cfg, target, err
}
