package engines

import (
	"context"
	"fmt"

	"github.com/kloop/kloop/kube/intercept"
	"github.com/kloop/kloop/session"
)

var _ session.WorkloadEngine = (*Intercepts)(nil)

// Workloads implements session.WorkloadEngine.
func (e *Intercepts) Workloads(ctx context.Context, t session.Target) (*session.WorkloadsResult, error) {
	_, cs, ns, err := connect(t)
	if err != nil {
		return nil, err
	}
	inj := &intercept.Injector{Client: cs, Namespace: ns, Logger: e.log}
	list, err := inj.Workloads(ctx)
	if err != nil {
		return nil, fmt.Errorf("list the workloads of namespace %s: %w", ns, err)
	}
	res := &session.WorkloadsResult{Namespace: ns, Workloads: make([]session.WorkloadInfo, 0, len(list))}
	for _, w := range list {
		info := session.WorkloadInfo{
			Workload: w.Workload.String(), Kind: string(w.Workload.Kind), Name: w.Workload.Name,
			Ready: int(w.Ready), Replicas: int(w.Wanted), Ports: make([]session.WorkloadPort, 0, len(w.Ports)),
		}
		for _, p := range w.Ports {
			info.Ports = append(info.Ports, session.WorkloadPort{Container: p.Container, Port: int(p.Port), Name: p.Name, Protocol: p.Protocol})
		}
		switch {
		case w.RecordErr != nil:
			info.Agent = &session.WorkloadAgent{Holders: []session.WorkloadHolder{}, Error: w.RecordErr.Error()}
		case w.Agent != nil:
			info.Agent = &session.WorkloadAgent{Resident: w.Agent.Resident, Holders: make([]session.WorkloadHolder, 0, len(w.Agent.Holders))}
			for _, h := range w.Agent.Holders {
				info.Agent.Holders = append(info.Agent.Holders, session.WorkloadHolder{Name: h.Name, Rule: h.Header})
			}
		}
		res.Workloads = append(res.Workloads, info)
	}
	return res, nil
}
