// Package ports picks the container port an intercept takes when the user
// names none (no --port, no port: in .kloop.yaml, no "port" in the launch
// configuration), the way a user expects:
//
//  1. the only TCP port the workload's containers declare;
//  2. else the one container port the workload's Services send traffic to,
//     by number or by name (targetPort: web);
//  3. else an error that lists the candidates and how to pick one.
//
// Every face (CLI, .kloop.yaml, launch configurations, code lenses) reaches
// it through the session core and the intercept engine, so the rules are
// the same everywhere. The local port still defaults to the chosen one.
package ports

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/kloop/kloop/kube/env"
	"github.com/kloop/kloop/kube/workload"
)

// AgentContainer is kloop's traffic-agent sidecar; its ports are never a
// candidate.
const AgentContainer = "kloop-agent"

// ErrNoChoice matches the errors of Choose: no port, or several and no way
// to tell which one the user means.
var ErrNoChoice = errors.New("cannot tell which port to intercept")

// Candidate is a container port an intercept could take.
type Candidate struct {
	Container string
	Name      string // the port's name; may be empty
	Port      int
	// Services lists the Service ports that send traffic to it, as
	// "SERVICE:PORT".
	Services []string
}

func (c Candidate) String() string {
	s := strconv.Itoa(c.Port)
	if c.Name != "" {
		s = c.Name + " " + s
	}
	s += " (container " + c.Container
	if len(c.Services) > 0 {
		s += ", Service " + strings.Join(c.Services, ", ")
	}
	return s + ")"
}

// ChoiceError says why no port could be chosen and how to name one.
type ChoiceError struct {
	Workload workload.Workload
	// Candidates are the ports to choose from; empty when the workload
	// declares no TCP container port.
	Candidates []Candidate
	// Targeted: the candidates are the ports Services target (several),
	// not all the declared ones.
	Targeted bool
}

func (e *ChoiceError) Error() string {
	if len(e.Candidates) == 0 {
		return fmt.Sprintf("%s declares no TCP container port to intercept: add the port your program serves under ports: of its container (containerPort)", e.Workload)
	}
	list := make([]string, len(e.Candidates))
	for i, c := range e.Candidates {
		list[i] = c.String()
	}
	why := "none of them is the target of a Service that selects its pods"
	if e.Targeted {
		why = "Services send traffic to more than one of them"
	}
	p := strconv.Itoa(e.Candidates[0].Port)
	return fmt.Sprintf("%s has %d ports and %s: %s. Name the one your program serves: --port %s[:LOCAL], port: %q under the intercept in .kloop.yaml, or \"port\": %q in the launch configuration",
		e.Workload, len(e.Candidates), why, strings.Join(list, "; "), p, p, p)
}

func (e *ChoiceError) Is(target error) bool { return target == ErrNoChoice }

// Choose picks the container port to intercept from the workload's pod
// template and the Services of its namespace (Services whose selector does
// not match the template's labels are ignored).
func Choose(w workload.Workload, tmpl *corev1.PodTemplateSpec, services []corev1.Service) (int, error) {
	var cands []Candidate
	seen := map[int]bool{}
	for _, c := range tmpl.Spec.Containers {
		if c.Name == AgentContainer {
			continue
		}
		for _, cp := range c.Ports {
			if cp.Protocol != "" && cp.Protocol != corev1.ProtocolTCP {
				continue
			}
			if p := int(cp.ContainerPort); !seen[p] {
				seen[p] = true
				cands = append(cands, Candidate{Container: c.Name, Name: cp.Name, Port: p})
			}
		}
	}
	switch len(cands) {
	case 0:
		return 0, &ChoiceError{Workload: w}
	case 1:
		return cands[0].Port, nil
	}
	podLabels := labels.Set(tmpl.Labels)
	svcs := append([]corev1.Service(nil), services...)
	sort.Slice(svcs, func(i, j int) bool { return svcs[i].Name < svcs[j].Name })
	for _, svc := range svcs {
		if len(svc.Spec.Selector) == 0 || !labels.SelectorFromSet(svc.Spec.Selector).Matches(podLabels) {
			continue
		}
		for _, sp := range svc.Spec.Ports {
			if sp.Protocol != "" && sp.Protocol != corev1.ProtocolTCP {
				continue
			}
			if i := targeted(sp, cands); i >= 0 {
				cands[i].Services = append(cands[i].Services, svc.Name+":"+strconv.Itoa(int(sp.Port)))
			}
		}
	}
	var hit []Candidate
	for _, c := range cands {
		if len(c.Services) > 0 {
			hit = append(hit, c)
		}
	}
	switch len(hit) {
	case 0:
		return 0, &ChoiceError{Workload: w, Candidates: cands}
	case 1:
		return hit[0].Port, nil
	}
	return 0, &ChoiceError{Workload: w, Candidates: hit, Targeted: true}
}

// targeted returns the index of the candidate a Service port sends to, or
// -1: a named targetPort names a container port, a number is the port
// itself, and no targetPort means the Service's own port.
func targeted(sp corev1.ServicePort, cands []Candidate) int {
	tp := sp.TargetPort
	for i, c := range cands {
		switch {
		case tp.Type == intstr.String && tp.StrVal != "":
			if tp.StrVal == c.Name {
				return i
			}
		case tp.IntValue() != 0:
			if tp.IntValue() == c.Port {
				return i
			}
		case int(sp.Port) == c.Port:
			return i
		}
	}
	return -1
}

// Find reads the workload's pod template and its namespace's Services and
// returns Choose's answer.
func Find(ctx context.Context, cs kubernetes.Interface, namespace string, w workload.Workload) (int, error) {
	var tmpl *corev1.PodTemplateSpec
	var err error
	switch w.Kind {
	case workload.Deployment:
		d, gerr := cs.AppsV1().Deployments(namespace).Get(ctx, w.Name, metav1.GetOptions{})
		if err = gerr; err == nil {
			tmpl = &d.Spec.Template
		}
	case workload.StatefulSet:
		s, gerr := cs.AppsV1().StatefulSets(namespace).Get(ctx, w.Name, metav1.GetOptions{})
		if err = gerr; err == nil {
			tmpl = &s.Spec.Template
		}
	default:
		return 0, fmt.Errorf("%s: kind %q is not deployment or statefulset", w, w.Kind)
	}
	switch {
	case apierrors.IsNotFound(err):
		return 0, &env.WorkloadNotFoundError{Workload: w, Namespace: namespace}
	case err != nil:
		return 0, fmt.Errorf("read %s in namespace %q to choose its port: %w", w, namespace, err)
	}
	list, err := cs.CoreV1().Services(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return 0, fmt.Errorf("list the Services of namespace %q to choose the port of %s: %w", namespace, w, err)
	}
	return Choose(w, tmpl, list.Items)
}
