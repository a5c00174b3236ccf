package engines

import (
	"context"
	"errors"
	"fmt"

	"github.com/kloop/kloop/kube/intercept"
	"github.com/kloop/kloop/kube/workload"
	"github.com/kloop/kloop/session"
)

var _ session.AgentEngine = (*Intercepts)(nil)

// InstallAgent implements session.AgentEngine.
func (e *Intercepts) InstallAgent(ctx context.Context, req session.AgentInstallRequest, p session.Progress) (*session.AgentInstallResult, error) {
	w, err := workload.Parse(req.Workload)
	if err != nil {
		return nil, err
	}
	_, cs, ns, err := connect(req.Target)
	if err != nil {
		return nil, err
	}
	image, err := e.agentImage(ctx, cs, req.AgentImage)
	if err != nil {
		return nil, err
	}
	inj := &intercept.Injector{Client: cs, Namespace: ns, Progress: installProgress(p), Logger: e.log}
	got, err := inj.Install(ctx, intercept.Spec{Workload: w, Ports: req.Ports, Holder: e.opts.Holder, Image: image})
	if err != nil {
		return nil, fmt.Errorf("install the kloop agent into %s: %w", w, err)
	}
	e.log.Info("resident agent installed", "workload", w.String(), "namespace", ns, "existing", got.Existing)
	return &session.AgentInstallResult{Workload: w.String(), Ports: got.Record.AppPorts(), Image: got.Record.Image, Existing: got.Existing}, nil
}

// UninstallAgent implements session.AgentEngine.
func (e *Intercepts) UninstallAgent(ctx context.Context, t session.Target, ref string, p session.Progress) error {
	w, err := workload.Parse(ref)
	if err != nil {
		return err
	}
	_, cs, ns, err := connect(t)
	if err != nil {
		return err
	}
	inj := &intercept.Injector{Client: cs, Namespace: ns, Progress: installProgress(p), Logger: e.log}
	if err := inj.Uninstall(ctx, w, 0); err != nil && !errors.Is(err, intercept.ErrRestoreConflict) {
		return fmt.Errorf("uninstall the kloop agent from %s: %w", w, err)
	} else if err != nil {
		return err
	}
	e.log.Info("resident agent uninstalled", "workload", w.String(), "namespace", ns)
	return nil
}

func installProgress(p session.Progress) intercept.ProgressFunc {
	return func(pr intercept.Progress) {
		pct := map[string]int{"inject": 15, "rollout": 40, "service": 80, "restore": 40}[pr.Stage]
		p.Report(pr.Message, pct)
	}
}
