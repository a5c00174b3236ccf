package session

import "github.com/kloop/kloop/config"

// Traffic is how an intercept treats the workload's traffic: which requests
// reach this machine and who answers the caller. The modes are declared
// once, in config.TrafficModes, and checked once, by config.CheckTraffic,
// for the CLI, launch configurations and .kloop.yaml alike.
type Traffic string

// TrafficSteal sends the intercepted requests to this machine, which
// answers them; the default.
const TrafficSteal Traffic = "steal"

// TrafficNone changes nothing in the cluster: no agent, no Service
// pointed, no Secret, no annotation. The program gets the pod's env and
// volumes and reaches the cluster's Services through the outbound proxy,
// which dials them through the API server; no request comes to it.
const TrafficNone Traffic = "none"

// Inbound reports whether the mode brings the workload's requests here.
func (t Traffic) Inbound() bool { return t != TrafficNone }

// TrafficMirror leaves every answer to the cluster's pods and sends this
// machine a copy of each request the rule selects; its answers are
// discarded.
const TrafficMirror Traffic = "mirror"

// ParseTraffic reads a traffic mode; "" is the default (steal).
func ParseTraffic(s string) (Traffic, error) {
	if s == "" {
		return TrafficSteal, nil
	}
	if err := config.CheckTraffic(s); err != nil {
		return "", err
	}
	return Traffic(s), nil
}
