package env

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"

	"github.com/kloop/kloop/kube/workload"
)

// RootVar is the variable that names the directory volumes are
// materialized under.
const RootVar = "KLOOP_ROOT"

// Options tune Resolve.
type Options struct {
	// Container names the container; empty means the first container that
	// is not the kloop-agent sidecar.
	Container string
	// Root is where volumes are materialized (KLOOP_ROOT is its absolute
	// path). Empty: no files are written and KLOOP_ROOT is not set. See
	// DefaultRoot.
	Root string
	// ServiceLinks adds the kubelet's service link variables
	// (USERS_SERVICE_HOST, USERS_PORT_8080_TCP, ..., KUBERNETES_SERVICE_HOST)
	// and lets $(VAR) references use them, as in the pod (unless the pod
	// sets enableServiceLinks: false; KUBERNETES_* always). Off by default:
	// they hold cluster IPs, and KUBERNETES_SERVICE_HOST makes client
	// libraries believe they run in a pod.
	ServiceLinks bool
}

// Var is one resolved variable.
type Var struct {
	Name  string `json:"name"`
	Value string `json:"value"`
	// Source says where the value came from, e.g. `secret "orders-secret" key "api-token"`.
	// It never contains a value.
	Source string `json:"source"`
	// Secret is true when the value came from a Secret, or expands one.
	Secret bool `json:"secret,omitempty"`
}

// String renders NAME=VALUE, with the value of a secret redacted.
func (v Var) String() string {
	if v.Secret {
		return v.Name + "=<redacted>"
	}
	return v.Name + "=" + v.Value
}

// LogValue keeps secret values out of slog output.
func (v Var) LogValue() slog.Value {
	val := v.Value
	if v.Secret {
		val = "<redacted>"
	}
	return slog.GroupValue(slog.String("name", v.Name), slog.String("value", val), slog.String("source", v.Source))
}

// File is one materialized file.
type File struct {
	// Path is the local path, under Result.Root.
	Path string `json:"path"`
	// MountPath is the path in the container.
	MountPath string `json:"mountPath"`
	Volume    string `json:"volume"`
	Secret    bool   `json:"secret,omitempty"`
}

// Result is a resolved container environment.
type Result struct {
	Workload  workload.Workload `json:"workload"`
	Namespace string            `json:"namespace"`
	Container string            `json:"container"`
	// Pod is the running pod whose fields fieldRef values came from; empty
	// when none was running (the pod template was used).
	Pod string `json:"pod,omitempty"`
	// Vars in kubelet order: envFrom keys (sorted within each source), then
	// env entries; an overridden variable keeps its first position and
	// takes its last value. KLOOP_ROOT comes last when Root was set.
	Vars []Var `json:"vars"`
	// Root is KLOOP_ROOT, empty when no volumes were materialized.
	Root  string `json:"root,omitempty"`
	Files []File `json:"files,omitempty"`
	// Warnings: skipped keys, fields only a pod has, volumes not
	// materialized. Never values.
	Warnings []string `json:"warnings,omitempty"`
}

// Get returns the value of a variable.
func (r *Result) Get(name string) (string, bool) {
	for _, v := range r.Vars {
		if v.Name == name {
			return v.Value, true
		}
	}
	return "", false
}

// Map returns the variables as a map.
func (r *Result) Map() map[string]string {
	m := make(map[string]string, len(r.Vars))
	for _, v := range r.Vars {
		m[v.Name] = v.Value
	}
	return m
}

// Environ returns NAME=VALUE strings, for exec.Cmd.Env.
func (r *Result) Environ() []string {
	out := make([]string, 0, len(r.Vars))
	for _, v := range r.Vars {
		out = append(out, v.Name+"="+v.Value)
	}
	return out
}

// Resolve resolves the environment of a container of the workload ref
// (deployment/NAME, statefulset/NAME, NAME for a Deployment, or any other form
// workload.Parse reads) in namespace, and materializes its volumes under
// opts.Root when set. A ref that does not parse is an ErrBadWorkload.
func Resolve(ctx context.Context, client kubernetes.Interface, namespace, ref string, opts Options) (*Result, error) {
	w, err := workload.Parse(ref)
	if err != nil {
		return nil, &badWorkloadError{err}
	}
	if namespace == "" {
		return nil, fmt.Errorf("resolve env of %s: no namespace given", w)
	}
	t, err := getWorkload(ctx, client, namespace, w)
	if err != nil {
		return nil, err
	}
	ci, err := chooseContainer(t, opts.Container)
	if err != nil {
		return nil, err
	}
	cname := t.template.Spec.Containers[ci].Name
	res := &Result{Workload: w, Namespace: namespace, Container: cname}
	running, err := findPod(ctx, client, t, cname)
	if err != nil {
		var fe *ForbiddenError
		if !errors.As(err, &fe) {
			return nil, err
		}
		res.Warnings = append(res.Warnings, fe.Error())
	}
	pod := podFor(t, running)
	if running != nil {
		res.Pod = running.Name
	}
	r := &resolver{
		src:       newClientSource(client, namespace),
		client:    client,
		pod:       pod,
		container: &pod.Spec.Containers[ci],
		fromPod:   running != nil,
		workload:  w,
	}
	if opts.ServiceLinks {
		svc, warnings, err := serviceEnv(ctx, client, pod)
		if err != nil {
			return nil, fmt.Errorf("resolve env of %s: %w", w, err)
		}
		r.services = svc
		r.warnings = append(r.warnings, warnings...)
	}
	vars, err := r.env(ctx)
	if err != nil {
		return nil, fmt.Errorf("resolve env of %s container %q in namespace %q: %w", w, cname, namespace, err)
	}
	if opts.Root != "" {
		root, err := filepath.Abs(opts.Root)
		if err != nil {
			return nil, fmt.Errorf("KLOOP_ROOT %s: %w", opts.Root, err)
		}
		files, err := r.materialize(ctx, root, vars)
		if err != nil {
			return nil, fmt.Errorf("materialize volumes of %s container %q: %w", w, cname, err)
		}
		res.Root, res.Files = root, files
		vars = setVar(vars, Var{Name: RootVar, Value: root, Source: "kloop"})
	}
	res.Vars = vars
	res.Warnings = append(res.Warnings, r.warnings...)
	return res, nil
}

// podFor builds the pod the kubelet would see: the template's spec (what
// the next pod gets) with the identity and status of the running pod when
// there is one. Requests default to limits as for a Pod.
func podFor(t *target, running *corev1.Pod) *corev1.Pod {
	pod := &corev1.Pod{Spec: *t.template.Spec.DeepCopy()}
	if running != nil {
		pod.ObjectMeta = *running.ObjectMeta.DeepCopy()
		pod.Status = *running.Status.DeepCopy()
		pod.Spec.NodeName = running.Spec.NodeName
		pod.Spec.ServiceAccountName = running.Spec.ServiceAccountName
	} else {
		pod.ObjectMeta = *t.template.ObjectMeta.DeepCopy()
		if pod.Spec.ServiceAccountName == "" {
			pod.Spec.ServiceAccountName = "default" // the ServiceAccount admission plugin's default
		}
	}
	pod.Namespace = t.namespace
	defaultRequests(pod.Spec.Containers)
	defaultRequests(pod.Spec.InitContainers)
	return pod
}

func defaultRequests(cs []corev1.Container) {
	for i := range cs {
		r := &cs[i].Resources
		if r.Limits == nil {
			continue
		}
		if r.Requests == nil {
			r.Requests = corev1.ResourceList{}
		}
		for k, v := range r.Limits {
			if _, ok := r.Requests[k]; !ok {
				r.Requests[k] = v.DeepCopy()
			}
		}
	}
}

// source reads the ConfigMaps and Secrets a pod refers to. Errors are API
// errors (NotFound, Forbidden, ...).
type source interface {
	configMap(ctx context.Context, name string) (*corev1.ConfigMap, error)
	secret(ctx context.Context, name string) (*corev1.Secret, error)
}

type clientSource struct {
	client     kubernetes.Interface
	ns         string
	configMaps map[string]*corev1.ConfigMap
	secrets    map[string]*corev1.Secret
}

func newClientSource(client kubernetes.Interface, ns string) *clientSource {
	return &clientSource{client: client, ns: ns, configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{}}
}

func (s *clientSource) configMap(ctx context.Context, name string) (*corev1.ConfigMap, error) {
	if cm, ok := s.configMaps[name]; ok {
		return cm, nil
	}
	cm, err := s.client.CoreV1().ConfigMaps(s.ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	s.configMaps[name] = cm
	return cm, nil
}

func (s *clientSource) secret(ctx context.Context, name string) (*corev1.Secret, error) {
	if sec, ok := s.secrets[name]; ok {
		return sec, nil
	}
	sec, err := s.client.CoreV1().Secrets(s.ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	s.secrets[name] = sec
	return sec, nil
}

// resolver resolves one container of one pod.
type resolver struct {
	src       source
	client    kubernetes.Interface // for the node; nil in unit tests without one
	pod       *corev1.Pod
	container *corev1.Container
	// fromPod: pod identity and status come from a running pod.
	fromPod  bool
	workload workload.Workload
	// services are the service link variables (nil without ServiceLinks).
	services map[string]string
	// node is read lazily, for resource limits defaulted to allocatable.
	node      *corev1.Node
	nodeRead  bool
	nodeError string
	warnings  []string
}

func (r *resolver) warnf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	for _, w := range r.warnings {
		if w == msg {
			return
		}
	}
	r.warnings = append(r.warnings, msg)
}

// objErr turns an error reading a ConfigMap or Secret into this package's
// errors; missing reports whether the object does not exist.
func (r *resolver) objErr(err error, kind, name, why string) (missing bool, _ error) {
	resource := strings.ToLower(kind) + "s"
	switch {
	case apierrors.IsNotFound(err):
		return true, nil
	case apierrors.IsForbidden(err):
		return false, &ForbiddenError{Verb: "get", Resource: resource, Name: name, Namespace: r.pod.Namespace, For: why, Err: err}
	default:
		return false, fmt.Errorf("%s: get %s %q in namespace %q: %w", why, kind, name, r.pod.Namespace, err)
	}
}

// lookupData returns the data of a ConfigMap or Secret; nil data and nil
// error mean the object is missing.
func (r *resolver) lookupData(ctx context.Context, kind, name, why string) (map[string]string, error) {
	switch kind {
	case "ConfigMap":
		cm, err := r.src.configMap(ctx, name)
		if err != nil {
			missing, err := r.objErr(err, kind, name, why)
			if missing {
				return nil, nil
			}
			return nil, err
		}
		data := make(map[string]string, len(cm.Data)+len(cm.BinaryData))
		for k, v := range cm.Data {
			data[k] = v
		}
		return data, nil
	default:
		sec, err := r.src.secret(ctx, name)
		if err != nil {
			missing, err := r.objErr(err, kind, name, why)
			if missing {
				return nil, nil
			}
			return nil, err
		}
		data := make(map[string]string, len(sec.Data))
		for k, v := range sec.Data {
			data[k] = string(v)
		}
		return data, nil
	}
}

// env follows kubelet's makeEnvironmentVariables.
func (r *resolver) env(ctx context.Context) ([]Var, error) {
	var vars []Var
	index := map[string]int{}
	set := func(v Var) {
		if strings.IndexByte(v.Value, 0) >= 0 {
			// No process environment can carry a NUL byte (exec fails).
			r.warnf("%s (from %s) contains a NUL byte, which no process environment can carry; not set", v.Name, v.Source)
			return
		}
		if i, ok := index[v.Name]; ok {
			vars[i] = v
			return
		}
		index[v.Name] = len(vars)
		vars = append(vars, v)
	}
	ns := r.pod.Namespace
	for i, from := range r.container.EnvFrom {
		var kind, name string
		var optional bool
		switch {
		case from.ConfigMapRef != nil:
			kind, name, optional = "ConfigMap", from.ConfigMapRef.Name, isTrue(from.ConfigMapRef.Optional)
		case from.SecretRef != nil:
			kind, name, optional = "Secret", from.SecretRef.Name, isTrue(from.SecretRef.Optional)
		default:
			continue
		}
		why := fmt.Sprintf("envFrom[%d]", i)
		data, err := r.lookupData(ctx, kind, name, why)
		if err != nil {
			return nil, err
		}
		if data == nil {
			if optional {
				r.warnf("%s: optional %s %q not found; skipped", why, kind, name)
				continue
			}
			return nil, &MissingRefError{Kind: kind, Name: name, Namespace: ns, For: why}
		}
		var invalid []string
		for _, k := range sortedKeys(data) {
			nk := from.Prefix + k
			if errs := validation.IsRelaxedEnvVarName(nk); len(errs) != 0 {
				invalid = append(invalid, fmt.Sprintf("%q", nk))
				continue
			}
			set(Var{Name: nk, Value: data[k], Source: fmt.Sprintf("%s %q key %q", strings.ToLower(kind), name, k), Secret: kind == "Secret"})
		}
		if len(invalid) > 0 {
			r.warnf("%s: keys [%s] of %s %q are not valid environment variable names; skipped", why, strings.Join(invalid, ", "), kind, name)
		}
	}
	for _, e := range r.container.Env {
		v := Var{Name: e.Name, Value: e.Value, Source: "value"}
		switch {
		case e.Value != "":
			secret := false
			v.Value = Expand(e.Value, func(name string) (string, bool) {
				i, ok := index[name]
				if !ok {
					v, ok := r.services[name]
					return v, ok
				}
				secret = secret || vars[i].Secret
				return vars[i].Value, true
			})
			v.Secret = secret
		case e.ValueFrom != nil:
			ok, err := r.valueFrom(ctx, e, &v)
			if err != nil {
				return nil, err
			}
			if !ok {
				continue
			}
		}
		set(v)
	}
	for _, name := range sortedKeys(r.services) {
		if _, ok := index[name]; !ok {
			set(Var{Name: name, Value: r.services[name], Source: "service link"})
		}
	}
	return vars, nil
}

// valueFrom resolves one env entry's valueFrom into v; false means an
// optional reference is missing and the variable is not set.
func (r *resolver) valueFrom(ctx context.Context, e corev1.EnvVar, v *Var) (bool, error) {
	vf := e.ValueFrom
	why := "env " + e.Name
	switch {
	case vf.FieldRef != nil:
		val, err := r.fieldValue(vf.FieldRef, why)
		if err != nil {
			return false, fmt.Errorf("%s: %w", why, err)
		}
		v.Value, v.Source = val, "fieldRef "+vf.FieldRef.FieldPath
	case vf.ResourceFieldRef != nil:
		val, ok, err := r.resourceValue(ctx, vf.ResourceFieldRef, why)
		if err != nil {
			return false, fmt.Errorf("%s: %w", why, err)
		}
		if !ok {
			return false, nil
		}
		v.Value, v.Source = val, "resourceFieldRef "+vf.ResourceFieldRef.Resource
	case vf.ConfigMapKeyRef != nil, vf.SecretKeyRef != nil:
		kind, name, key, optional := "ConfigMap", "", "", false
		if ref := vf.ConfigMapKeyRef; ref != nil {
			name, key, optional = ref.Name, ref.Key, isTrue(ref.Optional)
		} else {
			ref := vf.SecretKeyRef
			kind, name, key, optional = "Secret", ref.Name, ref.Key, isTrue(ref.Optional)
		}
		data, err := r.lookupData(ctx, kind, name, why)
		if err != nil {
			return false, err
		}
		if data == nil {
			if optional {
				r.warnf("%s: optional %s %q not found; not set", why, kind, name)
				return false, nil
			}
			return false, &MissingRefError{Kind: kind, Name: name, Namespace: r.pod.Namespace, For: why}
		}
		val, ok := data[key]
		if !ok {
			if optional {
				r.warnf("%s: optional key %q not in %s %q; not set", why, key, kind, name)
				return false, nil
			}
			return false, &MissingRefError{Kind: kind, Name: name, Key: key, Namespace: r.pod.Namespace, For: why}
		}
		v.Value = val
		v.Source = fmt.Sprintf("%s %q key %q", strings.ToLower(kind), name, key)
		v.Secret = kind == "Secret"
	default:
		// fileKeyRef (alpha EnvFiles) reads a file the pod writes at run time.
		r.warnf("%s: this kind of valueFrom is not supported; not set", why)
		return false, nil
	}
	return true, nil
}

// setVar sets or replaces a variable.
func setVar(vars []Var, v Var) []Var {
	for i := range vars {
		if vars[i].Name == v.Name {
			vars[i] = v
			return vars
		}
	}
	return append(vars, v)
}

func isTrue(b *bool) bool { return b != nil && *b }

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
