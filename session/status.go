package session

import "time"

// Status is what editors draw in their status bar and what `kloop status`
// prints. It is sent as the kloop/status notification after every change.
type Status struct {
	Workspace  string            `json:"workspace"`
	Claim      *ClaimStatus      `json:"claim,omitempty"`
	Intercepts []InterceptStatus `json:"intercepts"`
	Process    *ProcessStatus    `json:"process,omitempty"`
	LastBuild  *BuildStatus      `json:"lastBuild,omitempty"`
	// LastRelaunchMillis is the save-to-serving time of the last relaunch.
	LastRelaunchMillis int64 `json:"lastRelaunchMillis,omitempty"`
	// LastReplay is the replay-on-save after the last relaunch.
	LastReplay *ReplayResult `json:"lastReplay,omitempty"`
	Updated    time.Time     `json:"updated"`
}

// ClaimStatus describes the slot this session holds.
type ClaimStatus struct {
	Pool       string    `json:"pool"`
	Slot       string    `json:"slot"`
	Namespace  string    `json:"namespace,omitempty"`
	Holder     string    `json:"holder"`
	Until      time.Time `json:"until"`
	Kubeconfig string    `json:"kubeconfig"`
	// ResidentAgents: the pool makes the agents intercepts inject
	// resident (kloop pool create --resident-agents).
	ResidentAgents bool `json:"residentAgents,omitempty"`
}

// InterceptStatus describes one intercepted workload.
type InterceptStatus struct {
	Workload string            `json:"workload"`
	Ports    []string          `json:"ports"`
	Header   map[string]string `json:"header,omitempty"`
	// Rule describes the whole personal rule (headers, path, method; all
	// or any), such as "x-dev=me and path /api/"; "" for a global one.
	Rule     string `json:"rule,omitempty"`
	Requests int64  `json:"requests"`
	State    string `json:"state"`
	// Pods counts the workload's pods whose tunnel to this machine is up:
	// the ones whose traffic can reach it.
	Pods int `json:"pods,omitempty"`
	// Traffic is the intercept's mode (steal, mirror, none); with
	// mirror, Requests counts the copies that reached this machine.
	Traffic string `json:"traffic,omitempty"`
	// Paused is true while the local process is stopped at a breakpoint;
	// PausedToPods counts the requests the cluster's pods answered since
	// (a global intercept's agents send them there after a brief hold).
	Paused       bool  `json:"paused,omitempty"`
	PausedToPods int64 `json:"pausedToPods,omitempty"`
	// Notice is what the user must do for this intercept's traffic to be
	// answered: set while an intercept made for debugging has had no
	// debugger attached for Options.DebuggerWait.
	Notice string `json:"notice,omitempty"`
}

// ProcessStatus describes the local process behind the intercepts.
type ProcessStatus struct {
	Program string `json:"program"`
	PID     int    `json:"pid"`
	State   string `json:"state"`
	// Debug is true while the program runs under the debugger.
	Debug bool `json:"debug,omitempty"`
}

// BuildStatus describes the last build.
type BuildStatus struct {
	OK     bool      `json:"ok"`
	Millis int64     `json:"millis"`
	At     time.Time `json:"at"`
	Errors int       `json:"errors"`
	// Error is why the last build failed (the compiler's output).
	Error string `json:"error,omitempty"`
}

// Holds reports whether the session holds anything in the cluster or on
// the machine that an idle daemon must not abandon.
func (st Status) Holds() bool {
	return st.Claim != nil || len(st.Intercepts) > 0 || st.Process != nil
}

func (st Status) clone() Status {
	c := st
	if st.Claim != nil {
		cl := *st.Claim
		c.Claim = &cl
	}
	c.Intercepts = make([]InterceptStatus, len(st.Intercepts))
	for i, in := range st.Intercepts {
		in.Ports = append([]string(nil), in.Ports...)
		if in.Header != nil {
			h := make(map[string]string, len(in.Header))
			for k, v := range in.Header {
				h[k] = v
			}
			in.Header = h
		}
		c.Intercepts[i] = in
	}
	if st.Process != nil {
		p := *st.Process
		c.Process = &p
	}
	if st.LastBuild != nil {
		b := *st.LastBuild
		c.LastBuild = &b
	}
	return c
}
