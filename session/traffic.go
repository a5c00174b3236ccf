package session

import (
	"fmt"
	"strings"

	"github.com/kloop/kloop/config"
)

// Traffic is how an intercept treats the workload's traffic: which requests
// reach this machine and who answers the caller. The modes are declared
// once, in config.TrafficModes, which the schema and .kloop.yaml's
// validation read too.
type Traffic string

// TrafficSteal sends the intercepted requests to this machine, which
// answers them; the default.
const TrafficSteal Traffic = "steal"

// ParseTraffic reads a traffic mode as the CLI, .kloop.yaml and launch
// configurations spell it; "" is the default (steal).
func ParseTraffic(s string) (Traffic, error) {
	if s == "" {
		return TrafficSteal, nil
	}
	for _, m := range config.TrafficModes {
		if strings.EqualFold(s, m) {
			return Traffic(m), nil
		}
	}
	return "", fmt.Errorf("traffic mode %q is not one of %s", s, strings.Join(config.TrafficModes, ", "))
}
