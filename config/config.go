// Package config reads a workspace's .kloop.yaml: the Go types of the file,
// a parser that reports every problem at its line and column (for CLI errors
// and LSP diagnostics), and a JSON Schema generated from the same types so that
// editors complete and check the file the way the parser does.
package config

//go:generate go run ./gen -o kloop.schema.json

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/kloop/kloop/kube/workload"
)

// File names Load looks for, in this order of preference.
const (
	FileName    = ".kloop.yaml"
	AltFileName = ".kloop.yml"
)

// Defaults applied by Parse and Load to fields the file leaves out.
const (
	// DefaultPool, "", is the pool the cluster marks default (`kloop pool
	// create NAME --default`), else its only pool, else one named "default".
	DefaultPool     = ""
	DefaultClaimFor = 8 * time.Hour
	// MaxClaimFor bounds claim.for so a forgotten claim does not hold a shared
	// slot for weeks.
	MaxClaimFor = 7 * 24 * time.Hour
	// DefaultPauseHold and MaxPauseHold are the agent's (package agent):
	// longer holds would make callers time out, which is the outage the
	// hold avoids.
	DefaultPauseHold = 2 * time.Second
	MaxPauseHold     = 30 * time.Second
)

// MaxFileBytes bounds the .kloop.yaml that Load reads. The file is read on its own
// (the daemon loads it for every workspace it serves), so a huge file there, checked in
// by mistake or generated, must not make the daemon allocate without bound; a real one
// with many intercepts is a few KiB.
const MaxFileBytes = 1 << 20

// TrafficModes are the values of an intercept's traffic setting, as the
// CLI's --traffic, launch configurations and the schema spell them; the
// first is the default.
var TrafficModes = []string{"steal", "mirror", "none"}

// CheckTraffic reports a traffic mode that is not one of TrafficModes
// (spelled exactly, as the schema's enum has it); "" is the default.
func CheckTraffic(mode string) error {
	if mode == "" || slices.Contains(TrafficModes, mode) {
		return nil
	}
	return fmt.Errorf("traffic %q is not one of %s; leave it out for %s", mode, strings.Join(TrafficModes, ", "), TrafficModes[0])
}

// NoTrafficConflict says why setting is refused with traffic none: it
// shapes traffic that such an intercept never receives. setting is spelled
// as in .kloop.yaml; the CLI's flags share the names.
func NoTrafficConflict(setting string) string {
	return fmt.Sprintf("%s applies to the traffic an intercept receives, and traffic none receives none: remove %s, or use traffic steal", setting, setting)
}

// Config is the content of .kloop.yaml, the per-workspace kloop settings.
//
// The description tags become the JSON Schema descriptions that editors show
// on hover; keep them written for the person editing the file.
type Config struct {
	Claim      Claim       `yaml:"claim,omitempty" json:"claim,omitzero" description:"Defaults for 'kloop claim': which pool to claim a dev slot from and for how long."`
	Kubeconfig string      `yaml:"kubeconfig,omitempty" json:"kubeconfig,omitempty" description:"Kubeconfig file to use instead of $KUBECONFIG or ~/.kube/config. '~/' is the home directory; a relative path is relative to the directory of .kloop.yaml."`
	Context    string      `yaml:"context,omitempty" json:"context,omitempty" description:"Kubeconfig context to use instead of the current context."`
	AgentImage string      `yaml:"agentImage,omitempty" json:"agentImage,omitempty" pattern:"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$" description:"Image of the kloop traffic agent injected into intercepted workloads, e.g. registry.example.com/kloop/agent:v1.2.3. Overrides the image the cluster admin set (ConfigMap kloop-system/kloop-config, 'kloop pool agent-image REF'); KLOOP_AGENT_IMAGE in the daemon's environment overrides both. Default: ghcr.io/kloop/agent tagged with the running kloop version."`
	Intercepts []Intercept `yaml:"intercepts,omitempty" json:"intercepts,omitempty" description:"Workloads whose cluster traffic can be sent to a program on this machine, each with how to build and run that program. Entries are picked by name (or by workload) from the editor, the launch configuration or 'kloop intercept'."`
}

// Claim holds the defaults for claiming a dev slot from a pool.
type Claim struct {
	Pool string        `yaml:"pool,omitempty" json:"pool,omitempty" pattern:"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$" description:"Name of the claim pool (declared in the cluster by an admin) to claim a namespace or cluster from. Default: the pool the cluster marks default ('kloop pool create NAME --default'), else its only pool."`
	For  time.Duration `yaml:"for,omitempty" json:"for,omitempty" default:"8h" description:"How long a claim lasts unless renewed, as a Go duration such as 8h or 90m; more than 0 and at most 168h (7 days)."`
}

// Intercept describes one workload to intercept and the local program that
// takes its traffic. Program (a Go main package, built and debugged by kloop)
// and Run (any other command) are mutually exclusive; with neither, kloop only
// routes traffic and the user starts the process themselves.
type Intercept struct {
	Name         string            `yaml:"name,omitempty" json:"name,omitempty" pattern:"^[A-Za-z0-9]([-_.A-Za-z0-9]*[A-Za-z0-9])?$" description:"Short name for this intercept, unique in the file; used by 'kloop intercept NAME' and the editor commands. Defaults to the workload's name."`
	Workload     workload.Workload `yaml:"workload" json:"workload" required:"true" description:"Workload whose traffic is intercepted: deployment/NAME, statefulset/NAME, or a bare NAME meaning deployment/NAME. kubectl's spellings work too: deploy/NAME, sts/NAME, deployments.apps/NAME, StatefulSet/NAME and the like."`
	Program      string            `yaml:"program,omitempty" json:"program,omitempty" description:"Go main package to build and run (and debug) locally, such as ./cmd/orders; relative to the directory of .kloop.yaml. Use run.command instead for programs that are not Go."`
	Port         Port              `yaml:"port,omitempty" json:"port,omitzero" description:"Container port to intercept and the local port it goes to: \"REMOTE\" or \"REMOTE:LOCAL\" (LOCAL defaults to REMOTE), each 1..65535. May be a plain number. Defaults to the workload's only port."`
	Header       map[string]string `yaml:"header,omitempty" json:"header,omitempty" keyPattern:"^[-!#$%&'*+.^_\\x60|~0-9A-Za-z]+$" valuePattern:"^[^\\x00-\\x08\\x0a-\\x1f\\x7f]*$" description:"Personal intercept: only HTTP requests carrying these headers (name: value; each one condition, see match) come to this machine; other requests stay in the cluster. Without header, path, pathRegex and method every connection is intercepted."`
	Path         string            `yaml:"path,omitempty" json:"path,omitempty" pattern:"^/" description:"Personal intercept: only HTTP requests whose path starts with this prefix, such as /api/ (one condition, see match). The query is not part of the path."`
	PathRegex    string            `yaml:"pathRegex,omitempty" json:"pathRegex,omitempty" description:"Personal intercept: only HTTP requests whose path matches this Go (RE2) regular expression, such as ^/v[0-9]+/orders (one condition, see match); anchor it with ^ and $ to match the whole path."`
	Method       []string          `yaml:"method,omitempty" json:"method,omitempty" itemPattern:"^ *[A-Za-z]+( *, *[A-Za-z]+)* *$" description:"Personal intercept: only HTTP requests of these methods, such as [GET, POST] (together one condition, see match): GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, TRACE or CONNECT."`
	Match        string            `yaml:"match,omitempty" json:"match,omitempty" description:"How the conditions of header, path, pathRegex and method combine: all (the default) intercepts a request that meets every one, any a request that meets at least one. When another developer's rule also takes a request, whoever intercepted the workload first gets it."`
	Args         []string          `yaml:"args,omitempty" json:"args,omitempty" description:"Command-line arguments for the local program."`
	Env          map[string]string `yaml:"env,omitempty" json:"env,omitempty" keyPattern:"^[^=]+$" description:"Environment variables set on top of the environment resolved from the pod."`
	BuildFlags   []string          `yaml:"buildFlags,omitempty" json:"buildFlags,omitempty" description:"Extra flags for 'go build' of program, such as -tags=dev."`
	Readiness    *Readiness        `yaml:"readiness,omitempty" json:"readiness,omitempty" description:"How kloop knows the local program is ready for traffic after a (re)launch. Default: the local port accepts connections."`
	Build        *Command          `yaml:"build,omitempty" json:"build,omitempty" description:"For run.command programs: command that builds the program before each (re)launch. A failed build keeps the old process running."`
	Run          *Command          `yaml:"run,omitempty" json:"run,omitempty" description:"Command that starts a program that is not Go (no debugger); use program for Go main packages."`
	ReplayOnSave bool              `yaml:"replayOnSave,omitempty" json:"replayOnSave,omitempty" description:"After each relaunch, send the last recorded request of a safe method (GET, HEAD, OPTIONS, TRACE) to the new build and report how its answer changed, as 'kloop intercept --replay-on-save' does."`
	Watch        []string          `yaml:"watch,omitempty" json:"watch,omitempty" description:"Glob patterns (relative to the directory of .kloop.yaml; ** matches any number of directories) of files whose change rebuilds and relaunches the program. Go programs already watch their module's Go files."`
	Traffic      string            `yaml:"traffic,omitempty" json:"traffic,omitempty" description:"How the workload's traffic is treated: steal (the default) sends the intercepted requests to this machine, which answers them; mirror leaves every answer to the cluster's pods and sends this machine a copy of each request, whose answer is discarded; none changes nothing in the cluster and gives the program only the pod's env, volumes and outbound access to Services."`
	Outbound     *Outbound         `yaml:"outbound,omitempty" json:"outbound,omitempty" description:"Which of the local program's outbound connections leave from inside the cluster (through the HTTP_PROXY/HTTPS_PROXY/ALL_PROXY kloop sets) and which are dialed from this machine. By default cluster names (single-label names such as users, NAME.NAMESPACE of the intercept's namespace, *.svc, *.svc.cluster.local) and the cluster's Service CIDRs go to the cluster, everything else stays local."`
	PauseHold    time.Duration     `yaml:"pauseHold,omitempty" json:"pauseHold,omitempty" default:"2s" description:"While the debugged program is stopped at a breakpoint, how long each new request of a global intercept waits for it before the workload's own container in the pod answers instead, as a Go duration such as 2s or 500ms; more than 0 and at most 30s."`
}

// Outbound lists rules, each a host glob (users, *.internal), an IP or a
// CIDR (10.0.0.0/8), with an optional :PORT; see package kube/outbound.
type Outbound struct {
	Include []string `yaml:"include,omitempty" json:"include,omitempty" description:"Hosts that go through the cluster besides the defaults: host globs such as *.internal or users, IPs or CIDRs such as 10.0.0.0/8, each with an optional :PORT (users:8080, [fd00::/8]:443)."`
	Exclude []string `yaml:"exclude,omitempty" json:"exclude,omitempty" description:"Hosts dialed from this machine even when include or the defaults would send them to the cluster (exclude wins), in include's forms. They are also added to NO_PROXY."`
}

// Readiness says how to tell that a freshly started local program serves.
type Readiness struct {
	HTTPPath string `yaml:"httpPath,omitempty" json:"httpPath,omitempty" pattern:"^(/|$)" description:"Path, starting with '/', that must answer HTTP 200-399 on the local port (as a Kubernetes httpGet probe) before traffic is let through."`
}

// Command is an external command line, run from the directory of .kloop.yaml.
type Command struct {
	Command []string `yaml:"command" json:"command" required:"true" minItems:"1" description:"Program and arguments, such as [\"./gradlew\", \"installDist\"]. Not run through a shell."`
}

// Default returns the configuration used when a workspace has no .kloop.yaml.
func Default() *Config {
	return &Config{Claim: Claim{Pool: DefaultPool, For: DefaultClaimFor}}
}

// Intercept finds the intercept named name. When no intercept has that name,
// name is read as a workload (orders, deployment/orders) and the one intercept
// of that workload is returned, so that `kloop intercept deployment/orders`
// picks up the settings written for it. ok is false when nothing matches or
// the workload has several intercepts.
func (c *Config) Intercept(name string) (ic *Intercept, ok bool) {
	for i := range c.Intercepts {
		if c.Intercepts[i].Name == name {
			return &c.Intercepts[i], true
		}
	}
	w, err := workload.Parse(name)
	if err != nil {
		return nil, false
	}
	for i := range c.Intercepts {
		if c.Intercepts[i].Workload == w {
			if ic != nil {
				return nil, false
			}
			ic = &c.Intercepts[i]
		}
	}
	return ic, ic != nil
}

// KubeconfigPath returns c.Kubeconfig with '~/' expanded and a relative path
// made absolute against dir (the directory of .kloop.yaml). It returns "" when
// the file names no kubeconfig.
func (c *Config) KubeconfigPath(dir string) (string, error) {
	p := c.Kubeconfig
	switch {
	case p == "":
		return "", nil
	case p == "~" || strings.HasPrefix(p, "~/"):
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("expand kubeconfig %q: %w", p, err)
		}
		p = filepath.Join(home, strings.TrimPrefix(p, "~"))
	case !filepath.IsAbs(p):
		p = filepath.Join(dir, p)
	}
	return filepath.Clean(p), nil
}

// Load reads .kloop.yaml (or .kloop.yml) from dir. A directory without either
// file is not an error: Load returns Default() and an empty path. A file that
// does not parse returns an *Errors naming the file.
func Load(dir string) (*Config, string, error) {
	var found []string
	for _, name := range []string{FileName, AltFileName} {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err == nil {
			found = append(found, p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, "", fmt.Errorf("look for %s: %w", p, err)
		}
	}
	switch len(found) {
	case 0:
		return Default(), "", nil
	case 2:
		return nil, "", fmt.Errorf("both %s and %s exist in %s: keep one of them", FileName, AltFileName, dir)
	}
	path := found[0]
	data, err := ReadFile(path)
	if err != nil {
		return nil, "", err
	}
	cfg, err := Parse(path, data)
	if err != nil {
		return nil, path, err
	}
	return cfg, path, nil
}

// ErrFileTooLarge matches (errors.Is) the error of a config file over MaxFileBytes.
var ErrFileTooLarge = errors.New("kloop config file too large")

// ReadFile reads a .kloop.yaml for Parse, refusing one over MaxFileBytes (an error that
// names the file, its size and the limit, matching ErrFileTooLarge) without reading it.
// Everything that reads the file from disk on its own should read it through here.
func ReadFile(path string) ([]byte, error) { return readCapped(path, MaxFileBytes) }

// readCapped reads the file at path, refusing one over limit bytes before reading it.
// The size is checked on the open file, and the read is bounded as well: a file that
// grows after the check, or that is no regular file (a symlink to /dev/zero), still
// stops at the limit.
func readCapped(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read kloop config: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read kloop config: %w", err)
	}
	if fi.Size() > limit {
		return nil, tooLarge(path, fmt.Sprintf("%d bytes", fi.Size()), limit)
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read kloop config: %w", err)
	}
	if int64(len(data)) > limit {
		return nil, tooLarge(path, fmt.Sprintf("more than %d bytes", limit), limit)
	}
	return data, nil
}

func tooLarge(path, size string, limit int64) error {
	return fmt.Errorf("%w: %s is %s, over the limit of %d bytes (%d MiB); a .kloop.yaml holds a few settings and intercepts, so check that this is the file you meant to write", ErrFileTooLarge, path, size, limit, limit>>20)
}
