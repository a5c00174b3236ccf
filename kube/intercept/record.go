package intercept

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/kloop/kloop/agent/tunnel"
)

// Annotations and labels kloop writes. Everything needed to undo an
// intercept is in them, so `kloop leave --all` works from the cluster alone.
const (
	// AnnotationIntercept on the workload holds the Record (JSON).
	AnnotationIntercept = "kloop.dev/intercept"
	// AnnotationOriginalTemplate was written by kloop before restore
	// became a minimal undo; leave removes it.
	AnnotationOriginalTemplate = "kloop.dev/original-template"
	// AnnotationOriginalPorts on a Service holds its whole port list as
	// it was before an intercept by an older kloop (JSON); leave restores
	// it as that kloop would have.
	AnnotationOriginalPorts = "kloop.dev/original-ports"
	// AnnotationPointedPorts on a Service lists the ports kloop pointed at
	// the agent, each with its original targetPort (JSON); leave moves
	// back only those still pointing at the agent.
	AnnotationPointedPorts = "kloop.dev/pointed-ports"
	// AnnotationInterceptedBy on a Service names the workload ("deployment/orders").
	AnnotationInterceptedBy = "kloop.dev/intercepted-by"
	// AnnotationInterceptID on the pod template identifies one intercept,
	// so tunnels go only to pods that carry its agent and token.
	AnnotationInterceptID = "kloop.dev/intercept-id"
	// LabelIntercept on the token Secret names the workload's intercept.
	LabelIntercept = "kloop.dev/intercept"
	// AgentContainer is the name of the injected sidecar.
	AgentContainer = "kloop-agent"
	// AgentVolume is the injected volume holding the token.
	AgentVolume = "kloop-agent-token"
	// TokenKey is the token's key in the Secret, and the file name the
	// agent reads.
	TokenKey = "token"
	// TokenMountPath is where the Secret is mounted in the agent container
	// (also its working directory, so --token-file is relative).
	TokenMountPath = "/var/run/kloop"
)

// Record is what kloop stores on an intercepted workload: what it
// injected (shared by every holder) and who routes which requests.
type Record struct {
	// ID is unique per injection; pods with the agent carry it.
	ID string `json:"id"`
	// Since is when the agent was injected.
	Since time.Time `json:"since"`
	// Secret holds the tunnel token (key "token").
	Secret      string       `json:"secret"`
	Container   string       `json:"container"`
	Ports       []PortRecord `json:"ports"`
	Image       string       `json:"image"`
	ControlPort int          `json:"controlPort"`
	// Services whose targetPorts point at the agent.
	Services []string `json:"services"`
	// Holders route requests through the agent; the last to leave
	// restores the workload, unless the agent is Resident.
	Holders []HolderRecord `json:"holders"`
	// Resident agents were installed by `kloop agent install`: they stay,
	// dormant, when the last holder leaves, so the next intercept is a
	// message over the tunnel instead of a rollout. Only Uninstall
	// removes them.
	Resident bool `json:"resident,omitempty"`

	// The single holder of records written before intercepts had many;
	// readRecord moves them into Holders.
	LegacyHolder string `json:"holder,omitempty"`
	LegacyHeader string `json:"header,omitempty"`
}

// HolderRecord is one developer's intercept of the workload.
type HolderRecord struct {
	// Name is user@host, for people; ID tells installations apart.
	Name  string    `json:"name"`
	ID    string    `json:"id,omitempty"`
	Since time.Time `json:"since"`
	// Header is NAME=VALUE for a personal intercept, "" for a global one;
	// for a rule beyond one header it describes Filter, for people.
	Header string `json:"header,omitempty"`
	// Filter is a rule beyond one header; kloops before filters never
	// write it.
	Filter *tunnel.Filter `json:"filter,omitempty"`
	// Ports are the app ports this holder's rule routes.
	Ports []int `json:"ports"`
	// Mirror: the holder gets copies and takes no requests. A kloop
	// before mirroring reads such a holder as one that takes requests,
	// and so refuses to overlap it: safe, if stricter than needed.
	Mirror bool `json:"mirror,omitempty"`
}

// rule is the holder's personal rule, nil for a global one.
func (h HolderRecord) rule() *tunnel.Filter {
	if h.Filter != nil {
		return h.Filter
	}
	if h.Header == "" {
		return nil
	}
	name, value, _ := strings.Cut(h.Header, "=")
	return &tunnel.Filter{Headers: []tunnel.HeaderMatch{{Name: name, Value: value}}}
}

// Holder identifies who holds an intercept.
type Holder struct {
	// Name is user@host; ID is unique per kloop installation. Records
	// written without an ID match by Name.
	Name, ID string
}

// owns reports whether h is r's holder; the zero Holder owns every record
// (`kloop leave --all` of a whole namespace).
func (h Holder) owns(r HolderRecord) bool {
	switch {
	case h == Holder{}:
		return true
	case r.ID != "":
		return r.ID == h.ID
	default:
		return r.Name == h.Name
	}
}

// heldBy returns h's entry in the record, or nil.
func (r *Record) heldBy(h Holder) *HolderRecord {
	for i := range r.Holders {
		if h.owns(r.Holders[i]) {
			return &r.Holders[i]
		}
	}
	return nil
}

// others returns the holders that are not h.
func (r *Record) others(h Holder) []HolderRecord {
	var out []HolderRecord
	for _, x := range r.Holders {
		if !h.owns(x) {
			out = append(out, x)
		}
	}
	return out
}

// HolderNames lists the holders for people.
func (r Record) HolderNames() []string {
	out := make([]string, len(r.Holders))
	for i, h := range r.Holders {
		out[i] = h.Name
		if h.Header != "" {
			out[i] += " (" + h.Header + ")"
		}
	}
	return out
}

// PortRecord is one intercepted container port.
type PortRecord struct {
	Name      string `json:"name,omitempty"`
	Port      int    `json:"port"`
	AgentPort int    `json:"agentPort"`
	Protocol  string `json:"protocol"`
}

// AppPorts are the intercepted container ports.
func (r Record) AppPorts() []int {
	ports := make([]int, len(r.Ports))
	for i, p := range r.Ports {
		ports[i] = p.Port
	}
	return ports
}

// AgentPort returns the agent's port for container port app.
func (r Record) AgentPort(app int) (int, bool) {
	for _, p := range r.Ports {
		if p.Port == app {
			return p.AgentPort, true
		}
	}
	return 0, false
}

func readRecord(annotations map[string]string) (*Record, error) {
	v, ok := annotations[AnnotationIntercept]
	if !ok {
		return nil, nil
	}
	var r Record
	if err := json.Unmarshal([]byte(v), &r); err != nil {
		return nil, fmt.Errorf("annotation %s: %w", AnnotationIntercept, err)
	}
	if r.LegacyHolder != "" && len(r.Holders) == 0 {
		r.Holders = []HolderRecord{{Name: r.LegacyHolder, Since: r.Since, Header: r.LegacyHeader, Ports: r.AppPorts()}}
	}
	r.LegacyHolder, r.LegacyHeader = "", ""
	return &r, nil
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // API types always marshal
	}
	return string(b)
}

func unmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }
