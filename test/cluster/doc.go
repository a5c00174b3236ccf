// Package cluster is the test harness around the real local control plane
// of package github.com/kloop/kloop/sandbox: one cluster per test binary,
// one namespace per test, and local processes standing in for the
// containers kwok does not run.
//
// # One cluster per test binary
//
//	func TestMain(m *testing.M) { cluster.Main(m) }
//
// Main builds the binary cache when it is missing (progress on stderr; the
// first build takes about 13 minutes), starts a cluster named after the
// test binary and its pid, runs the tests and tears everything down, also
// on SIGINT/SIGTERM. A small reaper process (the test binary re-executed)
// removes the cluster, the stand-in processes and their network namespaces
// if the test binary dies without tearing down (panic, -timeout, SIGKILL);
// clusters of dead runs are also removed by the next run.
//
// # One namespace per test
//
//	env := cluster.New(t)          // namespace created now, deleted at t.Cleanup
//	env.Client                     // kubernetes.Interface
//	env.Config                     // *rest.Config (a copy, yours to change)
//	env.Dynamic                    // dynamic.Interface
//	env.Kubeconfig                 // 0600 kubeconfig file, context namespace = env.Namespace
//	env.Namespace
//	env.Apply(t, "testdata/x.yaml")// create every object of a manifest in the namespace
//	env.WaitPodsRunning(t, "app=orders", 2)
//	addr := env.PortForward(t, pod, 8080) // "127.0.0.1:PORT", via the apiserver
//	status, body := env.HTTPGet(t, pod, 8080, "/path") // port-forward + GET, retried
//
// Shared(t) returns the cluster itself (Name, Kubeconfig, Config, Client).
//
// # Container stand-ins
//
// kwok marks pods Running but runs nothing. StartStandIns runs every
// container of each Running pod of the namespace as a local process built
// from Go source, chosen by image (the work is done by package
// github.com/kloop/kloop/sandbox/standin, which `kloop sandbox run` uses
// for the demo too):
//
//	images := cluster.DefaultImages()   // the samples in test/testdata
//	images["ghcr.io/kloop/kloop"] = cluster.Image{Package: "github.com/kloop/kloop/cmd/kloop"}
//	si := env.StartStandIns(t, images)
//	p := si.Wait(t, podName, "orders")  // the process, once its ports accept
//	p.Env, p.Argv, p.Logs(), p.Dial(8080), p.Addr(8080), p.Running()
//
// The process gets what the kubelet would give it: command and args (the
// first element of command is replaced by the local binary, since it names
// a path inside the image), env with $(VAR) expansion, env from values,
// ConfigMaps, Secrets (keys and envFrom), fieldRef (metadata.name,
// namespace, uid, labels/annotations keys, spec.nodeName,
// spec.serviceAccountName, status.podIP, status.hostIP) and resourceFieldRef.
// ConfigMap, Secret and emptyDir volumes are materialized under a per-pod
// directory passed as KLOOP_ROOT: a file mounted at /etc/orders/x is at
// $KLOOP_ROOT/etc/orders/x (the convention kloop's intercept uses too).
//
// Networking is pod-like. As root, each pod gets a network namespace (ip
// netns, lo up, a veth on a bridge of this run with a 10.213.K.0/24 picked
// so it collides with no host address): its containers share a localhost,
// replicas listen on the same ports without colliding, and the pods of a
// run reach each other. Service names resolve (through the hosts file `ip
// netns exec` mounts) to an address of the run's own, where the runner
// listens on the Service's ports and sends each connection to a ready pod
// of the Service's EndpointSlices at the target port (a number or a
// container port's name), as kube-proxy does; a headless Service resolves
// to one of its pods. Without root,
// containers run on the host and each container port is remapped to a free
// 127.0.0.1 port; "host:port" and ":port" forms of the pod's ports in env
// values and args are rewritten to the remapped address (best effort), and
// Service names do not resolve.
//
// A kwok PortForward named after the pod sends Kubernetes port-forward
// through the apiserver to the stand-ins: in a namespace it runs the test
// binary as a pipe to the pod's 127.0.0.1:PORT from inside (as the
// kubelet's port-forward does, so a port bound to the pod's localhost is
// reachable); on loopback it targets the remapped port. Process.Dial
// reaches a container port the same way, without the apiserver.
//
// kwok leaves a new pod Running but not Ready; the runner marks it Ready
// once every stand-in of the pod runs, each of its ports accepts, and a
// port-forward through the apiserver reaches the pod (kwok loads a
// PortForward some time after it is created). A client that picks a Ready
// pod can port-forward to it at once. A pod without stand-ins (no runner
// for its namespace, or an image without one) never becomes Ready.
//
// Stopping (pod deleted, test cleanup) kills each process group and
// deletes the network namespaces.
//
// # A registry to pull from
//
// Stand-ins of images in the table are local builds; images of a registry
// named with WithRegistry are pulled from it and run as a kubelet would
// (the tag resolved to a digest, the node's platform, the entrypoint
// binary extracted; a failed pull leaves the container waiting with
// ErrImagePull, then ImagePullBackOff):
//
//	reg := cluster.StartRegistry(t) // go-containerregistry's registry on 127.0.0.1
//	si := env.StartStandIns(t, cluster.DefaultImages(), cluster.WithRegistry(reg, agentimage.Verify))
//	// kloop agent-image push reg.Host+"/kloop/agent" ...
package cluster
