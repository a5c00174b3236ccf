// Package intercept is the cluster side of kloop's intercepts: it puts the
// traffic agent (`kloop agent`, package agent) into a Deployment's or
// StatefulSet's pods, points the Services at it, keeps a tunnel (package
// agent/tunnel) to every ready pod through Kubernetes port-forward (package
// kube/portforward), and undoes all of it exactly.
//
// # What changes in the cluster
//
// Injector.Inject, for the chosen container ports (all TCP ports a Service
// targets, by default), when the workload carries no agent yet:
//
//   - creates Secret kloop-{d|s}-NAME-ID holding a fresh random token (key
//     "token"), labelled kloop.dev/intercept=KIND.NAME and owned by the
//     workload (long names are cut and hashed to fit the API's limits);
//   - stores a Record (ID, ports, agent ports, image, Services, and the
//     holders with their rules) in annotation kloop.dev/intercept;
//   - appends container kloop-agent and volume kloop-agent-token to the
//     template: image DefaultImage() (or Spec.Image), args `agent --forward
//     AGENT=127.0.0.1:APP/PROTO ... --control 127.0.0.1:7650 --token-file
//     token`, working directory /var/run/kloop where the Secret is mounted,
//     POD_NAME from the downward API, a TCP readiness probe on its first
//     port, and the template annotation kloop.dev/intercept-id; the app
//     container is untouched;
//   - waits for the rollout (progress through ProgressFunc), and only then
//     sets the targetPort of each Service port that reached an intercepted
//     port to the agent's port, listing each such port with its original
//     targetPort in the Service's annotation kloop.dev/pointed-ports.
//
// A Service that also selects another workload's pods (a canary under the
// same app label) is refused with a SharedServiceError naming them: those
// pods have no agent, so pointing the Service at the agent port would make
// their share of its traffic fail.
//
// A rollout that does not finish within Spec.RolloutTimeout fails with a
// PodNotReadyError naming each pod and why, and the workload is restored
// before Inject returns: the cluster is never left half-intercepted.
//
// # Many holders
//
// Holders are told apart by Spec.HolderID (one per kloop installation), and
// shown by Spec.Holder (user@host). When the workload already carries the
// agent, Inject adds the holder's rule to the Record, with no rollout: a
// personal rule beside others whose headers differ, or a global one when
// nobody else holds the ports; a rule that would take another holder's
// requests is refused with an InterceptedError naming them. The same holder
// calling Inject again adopts its intercept (after a daemon restart).
//
// Leave removes only the holder's rule; the last one out restores the
// workload as a minimal undo: the Services' pointed ports move back where
// they still target the agent, then exactly what Inject added to the
// template (container, volume, annotation) is removed and the Secret
// deleted, and it waits for the rollout. Everything edited meanwhile (a new
// image, env, a Service port) survives; an edit that collides with kloop's
// (a pointed port that now targets something else) is left as it is and
// reported in a RestoreConflictError. LeaveAll does this for a namespace
// from the cluster's annotations alone, with no local state.
//
// # Tunnels
//
// Tunnels watches the workload's pods and keeps, for each ready pod whose
// template carries this intercept's ID, one port-forward to the agent's
// control port with a tunnel on it (the agent proves it holds the token
// before the client does), the holder's rule set and inbound traffic served
// by Config.Local for the rule's ports only. Tunnels that drop are redialed with
// backoff; pods that go away are let go; new replicas are picked up. While a
// pod has no tunnel its agent sends all traffic to the app.
//
// # Use from the daemon
//
//	local := intercept.LocalDialer(func(port int) (string, bool) { return "127.0.0.1:8080", port == 8080 }, 0)
//	ic, err := intercept.Start(ctx, intercept.Config{
//		Rest: restConfig, Namespace: ns, Local: local, Progress: report,
//	}, intercept.Spec{Workload: w, Ports: []string{"8080"}, Header: h, Holder: "alice@laptop", HolderID: id})
//	ic.Tunnels().Pods()        // per-pod tunnel state for kloop/status
//	ic.Tunnels().Stats(ctx)    // requests to the laptop and to the app
//	ic.Tunnels().DialCluster   // outbound, for kube/intercept/proxy
//	ic.Close()                 // daemon exit: tunnels end, agent stays (re-adoptable)
//	ic.Leave(ctx)              // kloop leave: this holder's rule; the last restores
//	intercept.LeaveAll(ctx, client, ns, intercept.Holder{}, report) // everyone's
//
// Errors match the sentinels (ErrNoWorkload, ErrNoPort, ErrNoService,
// ErrSelectorNoPod, ErrPodNotReady, ErrForbidden, ErrInterceptedOther,
// ErrSharedService, ErrRestoreConflict) with
// errors.Is, and carry details in typed errors.
package intercept
