// Package intercept is the cluster side of kloop's intercepts: it puts the
// traffic agent (`kloop agent`, package agent) into a Deployment's or
// StatefulSet's pods, points the Services at it, keeps a tunnel (package
// agent/tunnel) to every ready pod through Kubernetes port-forward (package
// kube/portforward), and undoes all of it exactly.
//
// # What changes in the cluster
//
// Injector.Inject, for the chosen container ports (all TCP ports a Service
// targets, by default):
//
//   - creates Secret kloop-{d|s}-NAME-ID holding a fresh random token (key
//     "token"), labelled kloop.dev/intercept=KIND.NAME and owned by the
//     workload;
//   - stores the pod template as it was in annotation
//     kloop.dev/original-template, and a Record (holder, since, ID, ports,
//     agent ports, header, image, Services) in kloop.dev/intercept;
//   - appends container kloop-agent to the template: image DefaultImage()
//     (or Spec.Image), args `agent --forward AGENT=127.0.0.1:APP/PROTO ...
//     --control 127.0.0.1:7650 --token-file token`, working directory
//     /var/run/kloop where the Secret is mounted, POD_NAME from the downward
//     API, a TCP readiness probe on its first port, and the template
//     annotation kloop.dev/intercept-id; the app container is untouched;
//   - waits for the rollout (progress through ProgressFunc), and only then
//     sets the targetPort of each Service port that reached an intercepted
//     port to the agent's port, keeping the original ports in the Service's
//     annotation kloop.dev/original-ports.
//
// A rollout that does not finish within Spec.RolloutTimeout fails with a
// PodNotReadyError naming each pod and why, and the workload is restored
// before Inject returns: the cluster is never left half-intercepted.
//
// Leave restores the Services first (the agent still forwards to the app
// meanwhile), then the pod template from its annotation, deletes the Secret
// and waits for the rollout; the workload's spec is then deep-equal to the
// original. LeaveAll does this for every annotated workload and Service of a
// namespace, with no local state. A workload intercepted by another holder is
// refused with an InterceptedError naming them; the same holder calling Inject
// again adopts the existing intercept (after a daemon restart) without a
// rollout.
//
// # Tunnels
//
// Tunnels watches the workload's pods and keeps, for each ready pod whose
// template carries this intercept's ID, one port-forward to the agent's
// control port with an authenticated tunnel on it, the intercept set and
// inbound traffic served by Config.Local. Tunnels that drop are redialed with
// backoff; pods that go away are let go; new replicas are picked up. While a
// pod has no tunnel its agent sends all traffic to the app.
//
// # Use from the daemon
//
//	local := intercept.LocalDialer(func(port int) (string, bool) { return "127.0.0.1:8080", port == 8080 }, 0)
//	ic, err := intercept.Start(ctx, intercept.Config{
//		Rest: restConfig, Namespace: ns, Local: local, Progress: report,
//	}, intercept.Spec{Workload: w, Ports: []string{"8080"}, Header: h, Holder: "alice@laptop"})
//	ic.Tunnels().Pods()        // per-pod tunnel state for kloop/status
//	ic.Tunnels().Stats(ctx)    // requests to the laptop and to the app
//	ic.Tunnels().DialCluster   // outbound, for kube/intercept/proxy
//	ic.Close()                 // daemon exit: tunnels end, agent stays (re-adoptable)
//	ic.Leave(ctx)              // kloop leave: exact restore
//	intercept.LeaveAll(ctx, client, ns, "", report) // kloop leave --all
//
// Errors match the sentinels (ErrNoWorkload, ErrNoPort, ErrNoService,
// ErrSelectorNoPod, ErrPodNotReady, ErrForbidden, ErrInterceptedOther) with
// errors.Is, and carry details in typed errors.
package intercept
