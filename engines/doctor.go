package engines

import (
	"context"

	"github.com/kloop/kloop/kube/doctor"
	"github.com/kloop/kloop/kube/intercept"
	"github.com/kloop/kloop/session"
)

// Doctor implements session.DoctorEngine on kube/doctor.
type Doctor struct {
	// Image is $KLOOP_AGENT_IMAGE, as the Intercepts get it.
	Image string
}

var _ session.DoctorEngine = Doctor{}

// Doctor implements session.DoctorEngine.
func (d Doctor) Doctor(ctx context.Context, t session.Target, agentImage string) []session.Finding {
	rc, cs, ns, err := connect(t)
	if err != nil {
		return []session.Finding{{Check: "cluster", Status: doctor.Fail, Detail: err.Error(),
			Fix: "point kloop at a cluster: kubeconfig: and context: in .kloop.yaml, else $KUBECONFIG or ~/.kube/config"}}
	}
	return doctor.Run(ctx, doctor.Options{Rest: rc, Client: cs, Namespace: ns,
		Image: intercept.ImageOptions{Env: d.Image, Workspace: agentImage}})
}
