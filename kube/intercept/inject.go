package intercept

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
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

// Version is the agent image tag DefaultImage uses: the running kloop's
// version, which cmd/kloop sets once at start, so an agent and the daemon
// that tunnels to it always speak the same protocol. Never "latest": that
// tag would pull whatever was pushed last.
var Version = "devel"

// DefaultImageRepository is the agent image kloop injects unless told otherwise.
const DefaultImageRepository = "ghcr.io/kloop/agent"

// DefaultImage is DefaultImageRepository tagged with Version, spelled as a
// tag may be: Go's VCS-stamped versions carry "+dirty" or "+incompatible",
// and '+' is not allowed in a tag.
func DefaultImage() string { return DefaultImageRepository + ":" + imageTag(Version) }

// imageTag turns a version into a valid image tag: characters a tag may not
// hold become '-', and it is cut to the 128 characters a tag may have.
func imageTag(v string) string {
	b := []byte(v)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') || (i == 0 && (c == '.' || c == '-')) {
			b[i] = '_'
		}
	}
	if len(b) == 0 {
		return "devel"
	}
	if len(b) > 128 {
		b = b[:128]
	}
	return string(b)
}

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
	// Filter is a personal rule beyond one header (path, method, several
	// headers); it takes over Header.
	Filter *tunnel.Filter
	// Mirror leaves every answer to the app: the holder's machine gets
	// copies of the HTTP requests the rule (or, with none, every request)
	// selects. It takes no one's requests, so it may overlap any rule.
	Mirror bool
	// Holder (user@host) names who intercepts, for people.
	Holder string
	// HolderID is unique per kloop installation (engines keeps one in
	// the state dir); Holder when empty. Holders with different IDs share
	// the workload, each with their own rule; the same ID adopts its own.
	HolderID string
	// Image of the agent; DefaultImage() when empty.
	Image string
	// ControlPort is the agent's loopback tunnel port; 7650 when 0.
	ControlPort int
	// RolloutTimeout bounds each wait for pods; DefaultRolloutTimeout when 0.
	RolloutTimeout time.Duration
	// Resident makes the agent stay, dormant, after the last holder
	// leaves, as Install does (a claim pool's --resident-agents).
	Resident bool
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
	// Joined: the agent was there for other holders; this one added a rule.
	Joined bool
	// Holder is this holder's entry in Record.
	Holder HolderRecord
	// Selector selects the workload's pods.
	Selector labels.Selector
}

// errRaced: the workload's intercept changed between reading and writing
// it (another holder injected or restored at the same time); Inject starts
// over from what the cluster holds then.
var errRaced = errors.New("the workload's intercept changed meanwhile")

// Inject puts the agent into the workload and adds the holder's rule, joins
// the agent other holders already use (no rollout), or adopts the holder's
// own intercept (after a daemon restart). It waits for the rollout and
// points the Services at the agent. If a new injection's rollout fails the
// workload is restored before Inject returns.
func (in *Injector) Inject(ctx context.Context, spec Spec) (*Result, error) {
	if spec.Holder == "" {
		return nil, errors.New("intercept: Spec.Holder (user@host) is required")
	}
	if spec.HolderID == "" {
		spec.HolderID = spec.Holder
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
	if rule := spec.rule(); rule != nil {
		check := *rule
		if err := check.Compile(); err != nil {
			return nil, err
		}
	}
	for attempt := 0; ; attempt++ {
		res, err := in.inject(ctx, spec, false)
		if !errors.Is(err, errRaced) || attempt >= 4 {
			return res, err
		}
		in.log().Info("intercept changed while joining it; trying again", "workload", spec.Workload.String())
	}
}

func (spec Spec) holder() Holder { return Holder{Name: spec.Holder, ID: spec.HolderID} }

// rule is the holder's personal rule, nil for a global intercept.
func (spec Spec) rule() *tunnel.Filter {
	return tunnel.Intercept{Header: spec.Header, Filter: spec.Filter}.Rule()
}

// inject adds the agent with the holder's rule, or, when resident, with no
// rule at all (kloop agent install): a dormant agent for later intercepts.
func (in *Injector) inject(ctx context.Context, spec Spec, resident bool) (*Result, error) {
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
		if resident {
			return in.makeResident(ctx, obj, rec, spec, sel)
		}
		return in.join(ctx, obj, rec, spec, sel)
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
	svcs, err := in.servicesFor(ctx, obj, tmpl, ctr, ports, len(spec.Ports) == 0)
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
	var mine HolderRecord
	if !resident {
		if mine, err = holderRule(spec, ctr.Name, ports); err != nil {
			return nil, err
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
		Since: time.Now().UTC().Truncate(time.Second), ID: id,
		Secret: secretName(spec.Workload, id), Container: ctr.Name, Ports: ports,
		Image: spec.Image, ControlPort: spec.ControlPort, Services: svcs.names,
		Resident: resident || spec.Resident,
	}
	if !resident {
		mine.Since = rec.Since
		rec.Holders = []HolderRecord{mine}
	}

	in.Progress.report("inject", fmt.Sprintf("injecting the kloop agent into %s (ports %s)", spec.Workload, joinInts(rec.AppPorts())), 0, 0)
	if err := in.createSecret(ctx, obj, rec, spec.Holder, token); err != nil {
		return nil, err
	}
	// Write the agent into the template; the record says what was added,
	// so that leave removes exactly that.
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := getObject(ctx, cs, ns, spec.Workload)
		if err != nil {
			return err
		}
		if other, _ := readRecord(cur.meta().Annotations); other != nil {
			return errRaced
		}
		m := cur.meta()
		if m.Annotations == nil {
			m.Annotations = map[string]string{}
		}
		m.Annotations[AnnotationIntercept] = mustJSON(rec)
		injectAgent(cur.template(), rec)
		obj = cur
		return cur.update(ctx, cs)
	})
	if err != nil {
		in.deleteSecret(context.WithoutCancel(ctx), rec.Secret)
		return nil, err
	}
	in.log().Info("agent injected", "workload", spec.Workload.String(), "namespace", ns, "ports", rec.AppPorts(), "holder", spec.Holder)

	// A failed injection is undone whole, resident or not.
	rollback := func(rctx context.Context) (bool, error) {
		if spec.Resident && !resident {
			// The pool's resident mark must not keep an agent whose
			// rollout failed: cleared, the holder's leave restores.
			r := rec
			if err := in.updateRecord(rctx, spec.Workload, &r, func(x *Record) error { x.Resident = false; return nil }); err != nil && !errors.Is(err, errRaced) {
				return false, err
			}
		}
		if resident {
			return in.uninstall(rctx, spec.Workload, spec.RolloutTimeout, false)
		}
		return in.leaveHolder(rctx, spec.Workload, spec.holder(), spec.RolloutTimeout, false)
	}
	if err := in.waitRollout(ctx, spec.Workload, spec.RolloutTimeout); err != nil {
		var nr *PodNotReadyError
		rctx := context.WithoutCancel(ctx)
		restored, rerr := rollback(rctx)
		if rerr != nil {
			return nil, fmt.Errorf("%w; restoring the workload also failed: %v", err, rerr)
		}
		var pe *ImagePullError
		if errors.As(err, &nr) {
			nr.RolledBack = restored
		} else if errors.As(err, &pe) {
			pe.RolledBack = restored
		}
		return nil, err
	}
	in.Progress.report("service", fmt.Sprintf("pointing Service %s at the agent", strings.Join(rec.Services, ", ")), 0, 0)
	if err := in.pointServices(ctx, spec.Workload, rec); err != nil {
		if _, rerr := rollback(context.WithoutCancel(ctx)); rerr != nil {
			return nil, fmt.Errorf("%w; restoring the workload also failed: %v", err, rerr)
		}
		return nil, err
	}
	return &Result{Record: rec, Token: token, Selector: sel, Holder: mine}, nil
}

// holderRule is the holder's entry for ports: a header intercept routes the
// HTTP ports, a global one all of them.
func holderRule(spec Spec, container string, ports []PortRecord) (HolderRecord, error) {
	rule := spec.rule()
	h := HolderRecord{Name: spec.Holder, ID: spec.HolderID, Since: time.Now().UTC().Truncate(time.Millisecond), Header: rule.String(), Mirror: spec.Mirror}
	if rule.SingleHeader() == nil {
		h.Filter = rule
	}
	for _, p := range ports {
		switch {
		case spec.Mirror && p.Protocol != tunnel.ProtoHTTP:
			if len(spec.Ports) > 0 {
				return h, &NoPortError{Workload: spec.Workload, Container: container, Port: strconv.Itoa(p.Port),
					Why: "it is tcp, and mirroring copies HTTP requests; intercept it with --traffic steal or mark it /http"}
			}
		case rule == nil || p.Protocol == tunnel.ProtoHTTP:
			h.Ports = append(h.Ports, p.Port)
		case len(spec.Ports) > 0:
			return h, &NoPortError{Workload: spec.Workload, Container: container, Port: strconv.Itoa(p.Port),
				Why: "it is tcp, and a personal intercept (header, path or method) routes HTTP requests; intercept it globally or mark it /http"}
		}
	}
	if len(h.Ports) == 0 && spec.Mirror {
		return h, &NoPortError{Workload: spec.Workload, Container: container, Port: joinInts(portNumbers(ports)),
			Why: "no HTTP port to mirror; mirroring copies HTTP requests, use --traffic steal for tcp ports"}
	}
	if len(h.Ports) == 0 {
		return h, &NoPortError{Workload: spec.Workload, Container: container, Port: joinInts(portNumbers(ports)),
			Why: "no HTTP port to route by header, path or method; intercept globally instead"}
	}
	return h, nil
}

// collision reports why mine cannot route beside other: a global rule
// shares no port with anyone, and two personal rules never select the same
// requests. A mirror rule takes no requests, so it collides with nothing.
// The agent checks the same when the rules are set.
func collision(w workload.Workload, mine, other HolderRecord) error {
	if mine.Mirror || other.Mirror {
		return nil
	}
	shared := false
	for _, p := range mine.Ports {
		shared = shared || slices.Contains(other.Ports, p)
	}
	why := ""
	switch {
	case !shared:
		return nil
	case other.Header == "":
		why = whyTheyAreGlobal
	case mine.Header == "":
		why = whyYouAreGlobal
	default:
		if !mine.rule().Same(other.rule()) {
			return nil
		}
		why = whySameHeader
		if mine.rule().SingleHeader() == nil {
			why = whySameRule
		}
	}
	return &InterceptedError{Workload: w, Holder: other.Name, Since: other.Since, Header: other.Header, Why: why}
}

// join adds the holder's rule to an agent already in the workload (or
// adopts the holder's own): only the record changes, so no pod restarts.
func (in *Injector) join(ctx context.Context, obj *object, rec *Record, spec Spec, sel labels.Selector) (*Result, error) {
	me := spec.holder()
	tmpl := strippedTemplate(obj.template())
	ports := rec.Ports
	if len(spec.Ports) > 0 {
		_, want, err := choosePorts(spec, tmpl)
		if err != nil {
			return nil, err
		}
		ports = nil
		for _, p := range want {
			pr, ok := rec.port(p.Port)
			if !ok {
				return nil, fmt.Errorf("%s carries a kloop agent for ports %s (held by %s), not %d; intercept one of those ports, or change ports once everyone has left",
					spec.Workload, joinInts(rec.AppPorts()), strings.Join(rec.HolderNames(), ", "), p.Port)
			}
			ports = append(ports, pr)
		}
	}
	mine, err := holderRule(spec, rec.Container, ports)
	if err != nil {
		return nil, err
	}
	// The record is an annotation, and a Deployment's generation counts
	// annotation changes too: the controller then takes a moment to
	// observe it, though no pod changes. An agent that was rolled out
	// before the rule was added needs no wait after.
	rolledOut, _, _, _ := rolloutState(obj)
	own := rec.heldBy(me)
	var sharing []string
	for _, o := range rec.others(me) {
		sharing = append(sharing, (&Record{Holders: []HolderRecord{o}}).HolderNames()...)
	}
	if own != nil && own.Header == mine.Header && own.Mirror == mine.Mirror && slices.Equal(own.Ports, mine.Ports) && (rec.Resident || !spec.Resident) {
		mine = *own
	} else {
		if own != nil {
			mine.Since = own.Since
		}
		err := in.updateRecord(ctx, spec.Workload, rec, func(r *Record) error {
			for _, o := range r.others(me) {
				if err := collision(spec.Workload, mine, o); err != nil {
					return err
				}
			}
			r.Holders = append(r.others(me), mine)
			r.Resident = r.Resident || spec.Resident
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	sec, err := in.Client.CoreV1().Secrets(in.Namespace).Get(ctx, rec.Secret, metav1.GetOptions{})
	if err != nil {
		return nil, apiErr(err, "get", "secrets", in.Namespace)
	}
	token := strings.TrimSpace(string(sec.Data[TokenKey]))
	if token == "" {
		return nil, fmt.Errorf("%s: Secret %s holds no token; run `kloop leave --all` when nobody else intercepts it, and intercept again", spec.Workload, rec.Secret)
	}
	switch {
	case own != nil:
		in.Progress.report("inject", fmt.Sprintf("%s already carries your agent; reusing it", spec.Workload), 0, 0)
	case len(sharing) == 0 && rec.Resident:
		in.Progress.report("inject", fmt.Sprintf("%s carries a resident kloop agent; adding your rule, no rollout", spec.Workload), 0, 0)
	default:
		in.Progress.report("inject", fmt.Sprintf("%s already carries the kloop agent (for %s); adding your rule", spec.Workload, strings.Join(sharing, ", ")), 0, 0)
	}
	undo := func(err error) (*Result, error) {
		if own == nil {
			if _, rerr := in.leaveHolder(context.WithoutCancel(ctx), spec.Workload, me, spec.RolloutTimeout, false); rerr != nil {
				return nil, fmt.Errorf("%w; removing your rule also failed: %v", err, rerr)
			}
		}
		return nil, err
	}
	if !rolledOut {
		if err := in.waitRollout(ctx, spec.Workload, spec.RolloutTimeout); err != nil {
			return undo(err)
		}
	}
	if err := in.pointServices(ctx, spec.Workload, *rec); err != nil {
		return undo(err)
	}
	return &Result{Record: *rec, Token: token, Adopted: own != nil, Joined: own == nil, Selector: sel, Holder: mine}, nil
}

// updateRecord changes the workload's record of rec's injection with edit
// and writes it back, retrying on conflicts; rec becomes what was written.
// A record replaced or removed meanwhile is errRaced.
func (in *Injector) updateRecord(ctx context.Context, w workload.Workload, rec *Record, edit func(*Record) error) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := getObject(ctx, in.Client, in.Namespace, w)
		if err != nil {
			return err
		}
		r, err := readRecord(cur.meta().Annotations)
		if err != nil || r == nil || r.ID != rec.ID {
			return errRaced
		}
		if err := edit(r); err != nil {
			return err
		}
		cur.meta().Annotations[AnnotationIntercept] = mustJSON(r)
		if err := cur.update(ctx, in.Client); err != nil {
			return err
		}
		*rec = *r
		return nil
	})
}

// port returns the record's entry for container port n.
func (r *Record) port(n int) (PortRecord, bool) {
	for _, p := range r.Ports {
		if p.Port == n {
			return p, true
		}
	}
	return PortRecord{}, false
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
	vol := AgentVolume
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
// workload never touches another's Secret. Long workload names are cut
// and made unique again with a hash, within a Secret name's 253.
func secretName(w workload.Workload, id string) string {
	return "kloop-" + string(w.Kind[0]) + "-" + fitName(w.Name, 253-len("kloop-x--")-len(id)) + "-" + id
}

// secretLabel names the workload in the Secret's label (at most 63).
func secretLabel(w workload.Workload) string {
	return string(w.Kind) + "." + fitName(w.Name, 62-len(w.Kind))
}

// fitName returns name if it fits in n, else a prefix and a hash of the
// whole name that fit: distinct names stay distinct.
func fitName(name string, n int) string {
	if len(name) <= n {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	h := hex.EncodeToString(sum[:])[:10]
	return strings.TrimRight(name[:n-len(h)-1], "-.") + "-" + h
}

func (in *Injector) createSecret(ctx context.Context, obj *object, rec Record, holder, token string) error {
	m := obj.meta()
	isController := false
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:        rec.Secret,
			Labels:      map[string]string{LabelIntercept: secretLabel(obj.w)},
			Annotations: map[string]string{"kloop.dev/holder": holder},
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
		}
	}
	sts, err := in.Client.AppsV1().StatefulSets(in.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, apiErr(err, "list", "statefulsets", in.Namespace)
	}
	for _, s := range sts.Items {
		if rec, err := readRecord(s.Annotations); err == nil && rec != nil {
			out = append(out, Listed{workload.Workload{Kind: workload.StatefulSet, Name: s.Name}, *rec})
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
