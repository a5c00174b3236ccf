package intercept

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/kloop/kloop/agent/tunnel"
	"github.com/kloop/kloop/kube/workload"
)

// Version is the agent image tag DefaultImage uses.
var Version = "latest"

// DefaultImageRepository is the agent image kloop injects unless told otherwise.
const DefaultImageRepository = "ghcr.io/kloop/agent"

// DefaultImage is DefaultImageRepository tagged with Version.
func DefaultImage() string { return DefaultImageRepository + ":" + Version }

// DefaultRolloutTimeout bounds the wait for a rollout.
const DefaultRolloutTimeout = 2 * time.Minute

// firstAgentPort is where agent listen ports are allocated from.
const firstAgentPort = 7651

// Spec says what to intercept.
type Spec struct {
	Workload workload.Workload
	// Container is the app container; empty picks the one that has Ports
	// (or the first container with ports).
	Container string
	// Ports are container ports by number or name, each optionally
	// suffixed /http or /tcp (default: http, or tcp for ports whose name or
	// appProtocol says TLS or a non-HTTP protocol). Empty: every TCP port of
	// the container that a Service targets.
	Ports []string
	// Header makes it a personal intercept; nil is global.
	Header *tunnel.HeaderMatch
	// Holder (user@host) owns the intercept; another holder is refused.
	Holder string
	// Image of the agent; DefaultImage() when empty.
	Image string
	// ControlPort is the agent's loopback tunnel port; 7650 when 0.
	ControlPort int
	// RolloutTimeout bounds each wait for pods; DefaultRolloutTimeout when 0.
	RolloutTimeout time.Duration
}

// Progress is one step of long work, for progress reports.
type Progress struct {
	// Stage: "inject", "rollout", "service", "tunnel", "restore".
	Stage   string
	Message string
	// Done and Total count pods where that makes sense.
	Done, Total int
}

// ProgressFunc receives Progress; it must not block.
type ProgressFunc func(Progress)

func (f ProgressFunc) report(stage, msg string, done, total int) {
	if f != nil {
		f(Progress{Stage: stage, Message: msg, Done: done, Total: total})
	}
}

// Injector changes workloads in one namespace.
type Injector struct {
	Client    kubernetes.Interface
	Namespace string
	Progress  ProgressFunc
	Logger    *slog.Logger
}

func (in *Injector) log() *slog.Logger {
	if in.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return in.Logger
}

// Result is an intercept in the cluster.
type Result struct {
	Record Record
	// Token authenticates tunnels to the agents.
	Token string
	// Adopted: the holder's intercept already existed and was reused.
	Adopted bool
	// Selector selects the workload's pods.
	Selector labels.Selector
}

// Inject puts the agent into the workload (or adopts the holder's existing
// intercept), waits for the rollout and points the Services at the agent.
// If the rollout fails the workload is restored before Inject returns.
func (in *Injector) Inject(ctx context.Context, spec Spec) (*Result, error) {
	if spec.Holder == "" {
		return nil, errors.New("intercept: Spec.Holder (user@host) is required")
	}
	if spec.Image == "" {
		spec.Image = DefaultImage()
	}
	if spec.ControlPort == 0 {
		spec.ControlPort = 7650
	}
	if spec.RolloutTimeout == 0 {
		spec.RolloutTimeout = DefaultRolloutTimeout
	}
	cs, ns := in.Client, in.Namespace
	obj, err := getObject(ctx, cs, ns, spec.Workload)
	if err != nil {
		return nil, err
	}
	sel, err := obj.labelSelector()
	if err != nil {
		return nil, err
	}
	if rec, err := readRecord(obj.meta().Annotations); err != nil {
		return nil, fmt.Errorf("%s: %w", spec.Workload, err)
	} else if rec != nil {
		if rec.Holder != spec.Holder {
			return nil, &InterceptedError{Workload: spec.Workload, Holder: rec.Holder, Since: rec.Since, Header: rec.Header}
		}
		return in.adopt(ctx, obj, rec, spec, sel)
	}
	if obj.sts != nil && obj.sts.Spec.UpdateStrategy.Type == "OnDelete" {
		return nil, fmt.Errorf("%w: %s uses updateStrategy OnDelete, so its pods would not get the agent; use RollingUpdate", ErrUnsupported, spec.Workload)
	}
	if obj.deploy != nil && obj.deploy.Spec.Paused {
		return nil, fmt.Errorf("%w: %s is paused, so its pods would not get the agent; resume it first", ErrUnsupported, spec.Workload)
	}
	if obj.replicas() == 0 {
		return nil, fmt.Errorf("%w: %s has 0 replicas, so there is no pod to intercept; scale it up first", ErrPodNotReady, spec.Workload)
	}

	tmpl := obj.template()
	ctr, ports, err := choosePorts(spec, tmpl)
	if err != nil {
		return nil, err
	}
	svcs, err := in.servicesFor(ctx, spec.Workload, tmpl, ctr, ports, len(spec.Ports) == 0)
	if err != nil {
		return nil, err
	}
	if len(spec.Ports) == 0 {
		// Only the ports a Service targets.
		var targeted []PortRecord
		for _, p := range ports {
			if svcs.targets[p.Port] {
				targeted = append(targeted, p)
			}
		}
		ports = targeted
	}
	if spec.Header != nil {
		if err := spec.Header.Validate(); err != nil {
			return nil, err
		}
		http := 0
		for _, p := range ports {
			if p.Protocol == tunnel.ProtoHTTP {
				http++
			} else if len(spec.Ports) > 0 {
				return nil, &NoPortError{Workload: spec.Workload, Container: ctr.Name, Port: strconv.Itoa(p.Port),
					Why: "it is tcp, and a header intercept routes HTTP requests; intercept it globally or mark it /http"}
			}
		}
		if http == 0 {
			return nil, &NoPortError{Workload: spec.Workload, Container: ctr.Name, Port: joinInts(portNumbers(ports)),
				Why: "no HTTP port to route by header; intercept globally instead"}
		}
	}
	if err := allocateAgentPorts(tmpl, ports, spec.ControlPort); err != nil {
		return nil, fmt.Errorf("%s: %w", spec.Workload, err)
	}

	token, err := randomHex(32)
	if err != nil {
		return nil, err
	}
	id, err := randomHex(5)
	if err != nil {
		return nil, err
	}
	rec := Record{
		Holder: spec.Holder, Since: time.Now().UTC().Truncate(time.Second), ID: id,
		Secret: secretName(spec.Workload, id), Container: ctr.Name, Ports: ports,
		Image: spec.Image, ControlPort: spec.ControlPort, Services: svcs.names,
	}
	if spec.Header != nil {
		rec.Header = spec.Header.String()
	}

	in.Progress.report("inject", fmt.Sprintf("injecting the kloop agent into %s (ports %s)", spec.Workload, joinInts(rec.AppPorts())), 0, 0)
	if err := in.createSecret(ctx, obj, rec, token); err != nil {
		return nil, err
	}
	// Write the agent into the template; the annotations say what it was.
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := getObject(ctx, cs, ns, spec.Workload)
		if err != nil {
			return err
		}
		if other, _ := readRecord(cur.meta().Annotations); other != nil {
			return &InterceptedError{Workload: spec.Workload, Holder: other.Holder, Since: other.Since, Header: other.Header}
		}
		m := cur.meta()
		if m.Annotations == nil {
			m.Annotations = map[string]string{}
		}
		m.Annotations[AnnotationOriginalTemplate] = mustJSON(cur.template())
		m.Annotations[AnnotationIntercept] = mustJSON(rec)
		injectAgent(cur.template(), rec)
		obj = cur
		return cur.update(ctx, cs)
	})
	if err != nil {
		in.deleteSecret(context.WithoutCancel(ctx), rec.Secret)
		return nil, err
	}
	in.log().Info("agent injected", "workload", spec.Workload.String(), "namespace", ns, "ports", rec.AppPorts(), "holder", rec.Holder)

	if err := in.waitRollout(ctx, spec.Workload, spec.RolloutTimeout); err != nil {
		var nr *PodNotReadyError
		rctx := context.WithoutCancel(ctx)
		if rerr := in.restore(rctx, spec.Workload, spec.RolloutTimeout, false); rerr != nil {
			return nil, fmt.Errorf("%w; restoring the workload also failed: %v", err, rerr)
		}
		if errors.As(err, &nr) {
			nr.RolledBack = true
		}
		return nil, err
	}
	in.Progress.report("service", fmt.Sprintf("pointing Service %s at the agent", strings.Join(rec.Services, ", ")), 0, 0)
	if err := in.pointServices(ctx, spec.Workload, rec); err != nil {
		rctx := context.WithoutCancel(ctx)
		if rerr := in.restore(rctx, spec.Workload, spec.RolloutTimeout, false); rerr != nil {
			return nil, fmt.Errorf("%w; restoring the workload also failed: %v", err, rerr)
		}
		return nil, err
	}
	return &Result{Record: rec, Token: token, Selector: sel}, nil
}

// adopt reuses the holder's own intercept, after a daemon restart.
func (in *Injector) adopt(ctx context.Context, obj *object, rec *Record, spec Spec, sel labels.Selector) (*Result, error) {
	sec, err := in.Client.CoreV1().Secrets(in.Namespace).Get(ctx, rec.Secret, metav1.GetOptions{})
	if err != nil {
		return nil, apiErr(err, "get", "secrets", in.Namespace)
	}
	token := strings.TrimSpace(string(sec.Data[TokenKey]))
	if token == "" {
		return nil, fmt.Errorf("%s: Secret %s holds no token; run `kloop leave` and intercept again", spec.Workload, rec.Secret)
	}
	if len(spec.Ports) > 0 {
		_, want, err := choosePorts(spec, restoredTemplate(obj))
		if err != nil {
			return nil, err
		}
		for _, p := range want {
			if _, ok := rec.AgentPort(p.Port); !ok {
				return nil, fmt.Errorf("%s is already intercepted by you on ports %s, not %d; run `kloop leave %s` first to change ports",
					spec.Workload, joinInts(rec.AppPorts()), p.Port, spec.Workload)
			}
		}
	}
	header := ""
	if spec.Header != nil {
		header = spec.Header.String()
	}
	if header != rec.Header {
		// The header is applied over the tunnel; the record shows it to others.
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			cur, err := getObject(ctx, in.Client, in.Namespace, spec.Workload)
			if err != nil {
				return err
			}
			r, err := readRecord(cur.meta().Annotations)
			if err != nil || r == nil || r.ID != rec.ID {
				return fmt.Errorf("%s: the intercept changed while adopting it; try again", spec.Workload)
			}
			r.Header = header
			cur.meta().Annotations[AnnotationIntercept] = mustJSON(r)
			return cur.update(ctx, in.Client)
		})
		if err != nil {
			return nil, err
		}
		rec.Header = header
	}
	in.Progress.report("inject", fmt.Sprintf("%s already carries your agent; reusing it", spec.Workload), 0, 0)
	if err := in.waitRollout(ctx, spec.Workload, spec.RolloutTimeout); err != nil {
		return nil, err
	}
	if err := in.pointServices(ctx, spec.Workload, *rec); err != nil {
		return nil, err
	}
	return &Result{Record: *rec, Token: token, Adopted: true, Selector: sel}, nil
}

func restoredTemplate(o *object) *corev1.PodTemplateSpec {
	if t, err := readTemplate(o.meta().Annotations); err == nil {
		return t
	}
	return o.template()
}

// choosePorts resolves the container and the ports to intercept.
func choosePorts(spec Spec, tmpl *corev1.PodTemplateSpec) (*corev1.Container, []PortRecord, error) {
	type want struct{ ref, proto string }
	var wants []want
	for _, p := range spec.Ports {
		ref, proto, _ := strings.Cut(strings.TrimSpace(p), "/")
		if proto != "" && proto != tunnel.ProtoHTTP && proto != tunnel.ProtoTCP {
			return nil, nil, fmt.Errorf("port %q: protocol %q is not http or tcp", p, proto)
		}
		wants = append(wants, want{ref, proto})
	}
	has := func(c *corev1.Container, ref string) bool {
		for _, cp := range c.Ports {
			if cp.Name == ref || strconv.Itoa(int(cp.ContainerPort)) == ref {
				return true
			}
		}
		return false
	}
	var ctr *corev1.Container
	for i := range tmpl.Spec.Containers {
		c := &tmpl.Spec.Containers[i]
		if c.Name == AgentContainer {
			continue
		}
		switch {
		case spec.Container != "":
			if c.Name == spec.Container {
				ctr = c
			}
		case len(wants) > 0:
			if ctr == nil && has(c, wants[0].ref) {
				ctr = c
			}
		default:
			if ctr == nil && len(c.Ports) > 0 {
				ctr = c
			}
		}
	}
	if ctr == nil {
		var names []string
		for _, c := range tmpl.Spec.Containers {
			names = append(names, c.Name)
		}
		switch {
		case spec.Container != "":
			return nil, nil, fmt.Errorf("%w: %s has no container %q; its containers are %s", ErrNoPort, spec.Workload, spec.Container, strings.Join(names, ", "))
		case len(wants) > 0:
			var avail []string
			for _, c := range tmpl.Spec.Containers {
				avail = append(avail, describePorts(&c)...)
			}
			return nil, nil, &NoPortError{Workload: spec.Workload, Container: strings.Join(names, ", "), Port: wants[0].ref, Available: avail}
		default:
			return nil, nil, &NoPortError{Workload: spec.Workload, Container: strings.Join(names, ", ")}
		}
	}
	var out []PortRecord
	add := func(cp corev1.ContainerPort, proto string) error {
		if cp.Protocol != "" && cp.Protocol != corev1.ProtocolTCP {
			return &NoPortError{Workload: spec.Workload, Container: ctr.Name, Port: strconv.Itoa(int(cp.ContainerPort)),
				Why: fmt.Sprintf("it is %s; kloop intercepts TCP ports", cp.Protocol)}
		}
		for _, o := range out {
			if o.Port == int(cp.ContainerPort) {
				return nil
			}
		}
		if proto == "" {
			proto = guessProtocol(cp.Name, "")
		}
		out = append(out, PortRecord{Name: cp.Name, Port: int(cp.ContainerPort), Protocol: proto})
		return nil
	}
	if len(wants) == 0 {
		for _, cp := range ctr.Ports {
			if cp.Protocol == "" || cp.Protocol == corev1.ProtocolTCP {
				_ = add(cp, "")
			}
		}
		if len(out) == 0 {
			return nil, nil, &NoPortError{Workload: spec.Workload, Container: ctr.Name}
		}
		return ctr, out, nil
	}
	for _, w := range wants {
		found := false
		for _, cp := range ctr.Ports {
			if cp.Name == w.ref || strconv.Itoa(int(cp.ContainerPort)) == w.ref {
				found = true
				if err := add(cp, w.proto); err != nil {
					return nil, nil, err
				}
			}
		}
		if !found {
			return nil, nil, &NoPortError{Workload: spec.Workload, Container: ctr.Name, Port: w.ref, Available: describePorts(ctr)}
		}
	}
	return ctr, out, nil
}

func portNumbers(ports []PortRecord) []int {
	out := make([]int, len(ports))
	for i, p := range ports {
		out[i] = p.Port
	}
	return out
}

func describePorts(c *corev1.Container) []string {
	var s []string
	for _, p := range c.Ports {
		proto := p.Protocol
		if proto == "" {
			proto = corev1.ProtocolTCP
		}
		d := fmt.Sprintf("%d/%s", p.ContainerPort, proto)
		if p.Name != "" {
			d = p.Name + " " + d
		}
		s = append(s, d)
	}
	return s
}

// guessProtocol picks how the agent treats a port: per-request HTTP
// routing unless the name or appProtocol says otherwise.
func guessProtocol(name, appProtocol string) string {
	v := strings.ToLower(appProtocol)
	if v == "" {
		v = strings.ToLower(name)
	}
	for _, p := range []string{"https", "tls", "tcp", "mysql", "postgres", "redis", "mongo", "amqp", "kafka", "grpcs"} {
		if v == p || strings.HasPrefix(v, p+"-") {
			return tunnel.ProtoTCP
		}
	}
	return tunnel.ProtoHTTP
}

// allocateAgentPorts gives each port an agent port no container uses.
func allocateAgentPorts(tmpl *corev1.PodTemplateSpec, ports []PortRecord, control int) error {
	used := map[int]bool{control: true}
	for _, c := range tmpl.Spec.Containers {
		for _, p := range c.Ports {
			used[int(p.ContainerPort)] = true
			if p.Name == "kloop-control" {
				return errors.New("the pod already declares a port named kloop-control")
			}
		}
	}
	if tmpl.Spec.InitContainers != nil {
		for _, c := range tmpl.Spec.InitContainers {
			for _, p := range c.Ports {
				used[int(p.ContainerPort)] = true
			}
		}
	}
	for _, c := range tmpl.Spec.Containers {
		if c.Name == AgentContainer {
			return fmt.Errorf("the pod template already has a container named %s", AgentContainer)
		}
	}
	next := firstAgentPort
	for i := range ports {
		for used[next] {
			next++
		}
		ports[i].AgentPort = next
		used[next] = true
	}
	return nil
}

// injectAgent adds the sidecar, its token volume and the intercept ID.
func injectAgent(tmpl *corev1.PodTemplateSpec, rec Record) {
	if tmpl.Annotations == nil {
		tmpl.Annotations = map[string]string{}
	}
	tmpl.Annotations[AnnotationInterceptID] = rec.ID
	args := []string{"agent"}
	cports := make([]corev1.ContainerPort, 0, len(rec.Ports)+1)
	for _, p := range rec.Ports {
		args = append(args, "--forward", fmt.Sprintf("%d=127.0.0.1:%d/%s", p.AgentPort, p.Port, p.Protocol))
		cports = append(cports, corev1.ContainerPort{ContainerPort: int32(p.AgentPort), Protocol: corev1.ProtocolTCP})
	}
	args = append(args, "--control", fmt.Sprintf("127.0.0.1:%d", rec.ControlPort), "--token-file", TokenKey)
	cports = append(cports, corev1.ContainerPort{Name: "kloop-control", ContainerPort: int32(rec.ControlPort), Protocol: corev1.ProtocolTCP})
	vol := "kloop-agent-token"
	// Secret files are owned by root (the pod's fsGroup, which kloop does
	// not touch, aside); the agent image runs as a non-root user, so the
	// token must be world-readable inside this container's mount.
	mode := int32(0o444)
	tmpl.Spec.Volumes = append(tmpl.Spec.Volumes, corev1.Volume{
		Name:         vol,
		VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: rec.Secret, DefaultMode: &mode}},
	})
	tmpl.Spec.Containers = append(tmpl.Spec.Containers, corev1.Container{
		Name:  AgentContainer,
		Image: rec.Image,
		// The image's entrypoint is kloop; the token file is relative to
		// the working directory, the Secret's mount.
		Args:       args,
		WorkingDir: TokenMountPath,
		Env: []corev1.EnvVar{{
			Name:      "POD_NAME",
			ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.name"}},
		}},
		Ports:        cports,
		VolumeMounts: []corev1.VolumeMount{{Name: vol, MountPath: TokenMountPath, ReadOnly: true}},
		ReadinessProbe: &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(int32(rec.Ports[0].AgentPort))}},
			PeriodSeconds: 2,
		},
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("32Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
		},
		ImagePullPolicy: corev1.PullIfNotPresent,
		// What the "restricted" Pod Security level asks; the agent needs
		// no privilege.
		SecurityContext: &corev1.SecurityContext{
			RunAsNonRoot:             ptr(true),
			RunAsUser:                ptr(int64(65532)),
			AllowPrivilegeEscalation: ptr(false),
			ReadOnlyRootFilesystem:   ptr(true),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
	})
}

// secretName is unique per intercept, so a racing intercept of the same
// workload never touches another's Secret.
func secretName(w workload.Workload, id string) string {
	return "kloop-" + string(w.Kind[0]) + "-" + w.Name + "-" + id
}

func secretLabel(w workload.Workload) string { return string(w.Kind) + "." + w.Name }

func (in *Injector) createSecret(ctx context.Context, obj *object, rec Record, token string) error {
	m := obj.meta()
	isController := false
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:        rec.Secret,
			Labels:      map[string]string{LabelIntercept: secretLabel(obj.w)},
			Annotations: map[string]string{"kloop.dev/holder": rec.Holder},
			// Garbage-collected with the workload.
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "apps/v1", Kind: obj.w.Kind.Title(), Name: m.Name, UID: m.UID, Controller: &isController,
			}},
		},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{TokenKey: []byte(token)},
	}
	_, err := in.Client.CoreV1().Secrets(in.Namespace).Create(ctx, sec, metav1.CreateOptions{})
	return apiErr(err, "create", "secrets", in.Namespace)
}

// deleteSecretsOf deletes every token Secret of w's intercepts.
func (in *Injector) deleteSecretsOf(ctx context.Context, w workload.Workload) error {
	secs, err := in.Client.CoreV1().Secrets(in.Namespace).List(ctx, metav1.ListOptions{LabelSelector: LabelIntercept + "=" + secretLabel(w)})
	if err != nil {
		return apiErr(err, "list", "secrets", in.Namespace)
	}
	for _, s := range secs.Items {
		if err := in.deleteSecret(ctx, s.Name); err != nil {
			return err
		}
	}
	return nil
}

func (in *Injector) deleteSecret(ctx context.Context, name string) error {
	err := in.Client.CoreV1().Secrets(in.Namespace).Delete(ctx, name, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return apiErr(err, "delete", "secrets", in.Namespace)
}

// services is what servicesFor found.
type services struct {
	names   []string
	targets map[int]bool // container ports some Service targets
}

// servicesFor finds the Services that select the workload's pods and
// target the ports.
func (in *Injector) servicesFor(ctx context.Context, w workload.Workload, tmpl *corev1.PodTemplateSpec, ctr *corev1.Container, ports []PortRecord, anyPort bool) (*services, error) {
	list, err := in.Client.CoreV1().Services(in.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, apiErr(err, "list", "services", in.Namespace)
	}
	podLabels := labels.Set(tmpl.Labels)
	found := &services{targets: map[int]bool{}}
	var mismatched []corev1.Service
	for _, svc := range list.Items {
		targeted := false
		for _, sp := range svc.Spec.Ports {
			if p, ok := targetedPort(sp, ctr, ports); ok {
				targeted = true
				if len(svc.Spec.Selector) > 0 && labels.SelectorFromSet(svc.Spec.Selector).Matches(podLabels) {
					found.targets[p] = true
				}
			}
		}
		if !targeted || len(svc.Spec.Selector) == 0 {
			continue
		}
		if labels.SelectorFromSet(svc.Spec.Selector).Matches(podLabels) {
			found.names = append(found.names, svc.Name)
		} else {
			mismatched = append(mismatched, svc)
		}
	}
	sort.Strings(found.names)
	missing := 0
	for _, p := range ports {
		if !found.targets[p.Port] {
			missing++
		}
	}
	if len(found.names) > 0 && (anyPort || missing == 0) {
		return found, nil
	}
	// A Service that names the workload or targets its ports but selects
	// none of its pods is the likely mistake; say so.
	slices.SortFunc(mismatched, func(a, b corev1.Service) int {
		if (a.Name == w.Name) != (b.Name == w.Name) {
			if a.Name == w.Name {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Name, b.Name)
	})
	// Services that select another workload's pods are theirs; one named
	// after this workload, or selecting no workload's pods at all, was
	// meant for this one.
	var templates []labels.Set
	if len(mismatched) > 0 {
		templates = in.templateLabels(ctx)
	}
	for _, svc := range mismatched {
		sel := labels.SelectorFromSet(svc.Spec.Selector)
		other := false
		for _, l := range templates {
			other = other || sel.Matches(l)
		}
		if svc.Name != w.Name && (other || len(found.names) > 0) {
			continue
		}
		n := 0
		if pods, err := in.Client.CoreV1().Pods(in.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()}); err == nil {
			n = len(pods.Items)
		}
		return nil, &SelectorError{Service: svc.Name, Selector: labels.SelectorFromSet(svc.Spec.Selector).String(),
			Workload: w, PodLabels: podLabels.String(), Pods: n}
	}
	var want []int
	for _, p := range ports {
		if !found.targets[p.Port] {
			want = append(want, p.Port)
		}
	}
	return nil, &NoServiceError{Workload: w, Namespace: in.Namespace, Ports: want}
}

// templateLabels returns the pod template labels of the namespace's
// Deployments and StatefulSets (what it can read).
func (in *Injector) templateLabels(ctx context.Context) []labels.Set {
	var out []labels.Set
	if l, err := in.Client.AppsV1().Deployments(in.Namespace).List(ctx, metav1.ListOptions{}); err == nil {
		for _, d := range l.Items {
			out = append(out, labels.Set(d.Spec.Template.Labels))
		}
	}
	if l, err := in.Client.AppsV1().StatefulSets(in.Namespace).List(ctx, metav1.ListOptions{}); err == nil {
		for _, s := range l.Items {
			out = append(out, labels.Set(s.Spec.Template.Labels))
		}
	}
	return out
}

// targetedPort reports the intercepted container port a Service port sends to.
func targetedPort(sp corev1.ServicePort, ctr *corev1.Container, ports []PortRecord) (int, bool) {
	if sp.Protocol != "" && sp.Protocol != corev1.ProtocolTCP {
		return 0, false
	}
	tp := sp.TargetPort
	for _, p := range ports {
		switch {
		case tp.Type == intstr.String && tp.StrVal != "" && tp.StrVal == p.Name:
			return p.Port, true
		case tp.Type == intstr.Int && tp.IntVal == int32(p.Port):
			return p.Port, true
		case tp.Type == intstr.Int && tp.IntVal == 0 && sp.Port == int32(p.Port):
			return p.Port, true
		}
	}
	return 0, false
}

// pointServices sets the targetPort of every Service port that reaches an
// intercepted port to the agent's port, keeping the original ports in an
// annotation. Services already pointed (by an earlier run) are left as is.
func (in *Injector) pointServices(ctx context.Context, w workload.Workload, rec Record) error {
	svcs := in.Client.CoreV1().Services(in.Namespace)
	for _, name := range rec.Services {
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			svc, err := svcs.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return apiErr(err, "get", "services", in.Namespace)
			}
			if _, done := svc.Annotations[AnnotationOriginalPorts]; done {
				return nil
			}
			orig := mustJSON(svc.Spec.Ports)
			changed := false
			for i, sp := range svc.Spec.Ports {
				// The Service's targetPort names the app container's port.
				if p, ok := targetedPort(sp, &corev1.Container{}, rec.Ports); ok {
					ap, _ := rec.AgentPort(p)
					svc.Spec.Ports[i].TargetPort = intstr.FromInt32(int32(ap))
					changed = true
				}
			}
			if !changed {
				return nil
			}
			if svc.Annotations == nil {
				svc.Annotations = map[string]string{}
			}
			svc.Annotations[AnnotationOriginalPorts] = orig
			svc.Annotations[AnnotationInterceptedBy] = w.String()
			_, err = svcs.Update(ctx, svc, metav1.UpdateOptions{})
			if err != nil && !apierrors.IsConflict(err) {
				return apiErr(err, "update", "services", in.Namespace)
			}
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// restoreServices puts back the ports of every Service kloop changed for w
// (every workload when w is nil).
func (in *Injector) restoreServices(ctx context.Context, w *workload.Workload) error {
	svcs := in.Client.CoreV1().Services(in.Namespace)
	list, err := svcs.List(ctx, metav1.ListOptions{})
	if err != nil {
		return apiErr(err, "list", "services", in.Namespace)
	}
	for _, s := range list.Items {
		if _, ok := s.Annotations[AnnotationOriginalPorts]; !ok {
			continue
		}
		if w != nil && s.Annotations[AnnotationInterceptedBy] != w.String() {
			continue
		}
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			svc, err := svcs.Get(ctx, s.Name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return nil
			}
			if err != nil {
				return apiErr(err, "get", "services", in.Namespace)
			}
			v, ok := svc.Annotations[AnnotationOriginalPorts]
			if !ok {
				return nil
			}
			var ports []corev1.ServicePort
			if err := unmarshal(v, &ports); err != nil {
				return fmt.Errorf("service %s: annotation %s: %w", svc.Name, AnnotationOriginalPorts, err)
			}
			svc.Spec.Ports = ports
			delete(svc.Annotations, AnnotationOriginalPorts)
			delete(svc.Annotations, AnnotationInterceptedBy)
			if len(svc.Annotations) == 0 {
				svc.Annotations = nil
			}
			_, err = svcs.Update(ctx, svc, metav1.UpdateOptions{})
			if err != nil && !apierrors.IsConflict(err) {
				return apiErr(err, "update", "services", in.Namespace)
			}
			return err
		})
		if err != nil {
			return err
		}
		in.log().Info("service restored", "service", s.Name, "namespace", in.Namespace)
	}
	return nil
}

// Leave ends holder's intercept of w: the Services and the pod template are
// restored exactly, the token Secret is deleted, and it waits for the
// rollout. Another holder's intercept is refused unless holder is "". If w
// was deleted meanwhile, its Services and Secret are still cleaned up.
func (in *Injector) Leave(ctx context.Context, w workload.Workload, holder string, timeout time.Duration) error {
	obj, err := getObject(ctx, in.Client, in.Namespace, w)
	if errors.Is(err, ErrNoWorkload) {
		// Deleted meanwhile: put back its Services, drop its Secret.
		if err := in.restoreServices(ctx, &w); err != nil {
			return err
		}
		return in.deleteSecretsOf(ctx, w)
	}
	if err != nil {
		return err
	}
	rec, err := readRecord(obj.meta().Annotations)
	if err != nil {
		return fmt.Errorf("%s: %w", w, err)
	}
	if rec == nil {
		return fmt.Errorf("%w: %s carries no kloop intercept", ErrNotIntercepted, w)
	}
	if holder != "" && rec.Holder != holder {
		return &InterceptedError{Workload: w, Holder: rec.Holder, Since: rec.Since, Header: rec.Header}
	}
	if timeout == 0 {
		timeout = DefaultRolloutTimeout
	}
	return in.restore(ctx, w, timeout, true)
}

// restore undoes an intercept from the annotations alone: Services first
// (the agent still forwards to the app meanwhile), then the template.
func (in *Injector) restore(ctx context.Context, w workload.Workload, timeout time.Duration, wait bool) error {
	in.Progress.report("restore", fmt.Sprintf("restoring %s", w), 0, 0)
	if err := in.restoreServices(ctx, &w); err != nil {
		return err
	}
	var secret string
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		obj, err := getObject(ctx, in.Client, in.Namespace, w)
		if err != nil {
			return err
		}
		m := obj.meta()
		if rec, _ := readRecord(m.Annotations); rec != nil {
			secret = rec.Secret
		}
		if _, ok := m.Annotations[AnnotationOriginalTemplate]; !ok {
			return nil
		}
		orig, err := readTemplate(m.Annotations)
		if err != nil {
			return fmt.Errorf("%s: %w", w, err)
		}
		*obj.template() = *orig
		delete(m.Annotations, AnnotationOriginalTemplate)
		delete(m.Annotations, AnnotationIntercept)
		if len(m.Annotations) == 0 {
			m.Annotations = nil
		}
		return obj.update(ctx, in.Client)
	})
	if err != nil {
		return err
	}
	if secret != "" {
		if err := in.deleteSecret(ctx, secret); err != nil {
			return err
		}
	}
	in.log().Info("workload restored", "workload", w.String(), "namespace", in.Namespace)
	if !wait {
		return nil
	}
	return in.waitRollout(ctx, w, timeout)
}

// LeaveAll restores every workload of the namespace that carries an
// intercept (only holder's when holder is not ""), every Service pointed at
// an agent, and deletes leftover token Secrets, from the cluster's
// annotations alone. It returns the workloads it restored.
func (in *Injector) LeaveAll(ctx context.Context, holder string, timeout time.Duration) ([]workload.Workload, error) {
	recs, err := in.List(ctx)
	if err != nil {
		return nil, err
	}
	if timeout == 0 {
		timeout = DefaultRolloutTimeout
	}
	var done []workload.Workload
	var errs []error
	for _, r := range recs {
		if holder != "" && r.Record.Holder != holder {
			continue
		}
		if err := in.restore(ctx, r.Workload, timeout, false); err != nil {
			errs = append(errs, err)
			continue
		}
		done = append(done, r.Workload)
	}
	if holder == "" {
		// Services and Secrets whose workload is gone.
		if err := in.restoreServices(ctx, nil); err != nil {
			errs = append(errs, err)
		}
		secs, err := in.Client.CoreV1().Secrets(in.Namespace).List(ctx, metav1.ListOptions{LabelSelector: LabelIntercept})
		if err != nil {
			errs = append(errs, apiErr(err, "list", "secrets", in.Namespace))
		} else {
			for _, s := range secs.Items {
				if err := in.deleteSecret(ctx, s.Name); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	for _, w := range done {
		if err := in.waitRollout(ctx, w, timeout); err != nil {
			errs = append(errs, err)
		}
	}
	return done, errors.Join(errs...)
}

// Listed is an intercept found in the cluster.
type Listed struct {
	Workload workload.Workload
	Record   Record
}

// List returns the intercepts recorded on the namespace's workloads.
func (in *Injector) List(ctx context.Context) ([]Listed, error) {
	var out []Listed
	deps, err := in.Client.AppsV1().Deployments(in.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, apiErr(err, "list", "deployments", in.Namespace)
	}
	for _, d := range deps.Items {
		if rec, err := readRecord(d.Annotations); err == nil && rec != nil {
			out = append(out, Listed{workload.Workload{Kind: workload.Deployment, Name: d.Name}, *rec})
		} else if _, ok := d.Annotations[AnnotationOriginalTemplate]; ok {
			out = append(out, Listed{Workload: workload.Workload{Kind: workload.Deployment, Name: d.Name}})
		}
	}
	sts, err := in.Client.AppsV1().StatefulSets(in.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, apiErr(err, "list", "statefulsets", in.Namespace)
	}
	for _, s := range sts.Items {
		if rec, err := readRecord(s.Annotations); err == nil && rec != nil {
			out = append(out, Listed{workload.Workload{Kind: workload.StatefulSet, Name: s.Name}, *rec})
		} else if _, ok := s.Annotations[AnnotationOriginalTemplate]; ok {
			out = append(out, Listed{Workload: workload.Workload{Kind: workload.StatefulSet, Name: s.Name}})
		}
	}
	return out, nil
}

func ptr[T any](v T) *T { return &v }

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random token: %w", err)
	}
	return hex.EncodeToString(b), nil
}
