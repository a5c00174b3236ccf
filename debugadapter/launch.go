package debugadapter

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/kloop/kloop/agent/tunnel"
	"github.com/kloop/kloop/config"
	"github.com/kloop/kloop/kube/outbound"
	"github.com/kloop/kloop/session"
)

// LaunchConfig is the part of a `"type":"kloop"` launch configuration the bridge acts
// on. Every other attribute (stopOnEntry, maxStringLen, substitutePath, ...) goes to
// Delve unchanged.
type LaunchConfig struct {
	Workload string            `json:"workload,omitempty"`
	Program  string            `json:"program"`
	Port     string            `json:"port,omitempty"`
	Header   map[string]string `json:"header,omitempty"`
	// Path, PathRegex, Method and Match complete the personal rule, as
	// kloop intercept --path, --path-regex, --method and --match.
	Path       string            `json:"path,omitempty"`
	PathRegex  string            `json:"pathRegex,omitempty"`
	Method     []string          `json:"method,omitempty"`
	Match      string            `json:"match,omitempty"`
	Args       []string          `json:"args,omitempty"`
	Env        map[string]string `json:"env,omitempty"`
	Cwd        string            `json:"cwd,omitempty"`
	BuildFlags []string          `json:"buildFlags,omitempty"`
	// EndWithProgram ends the debug session when the program exits. By default the
	// session stays open so the next save relaunches the program.
	EndWithProgram bool `json:"endWithProgram,omitempty"`
	// RelaunchOnSave rebuilds and relaunches the program when a Go file of its module
	// changes (nil means true), as the run loop does without the debugger.
	RelaunchOnSave *bool `json:"relaunchOnSave,omitempty"`
	// ReplayOnSave sends the last recorded request again to each new build of an
	// intercepted workload, as `kloop intercept --replay-on-save` does.
	ReplayOnSave bool `json:"replayOnSave,omitempty"`
	// Traffic is the intercept's traffic mode, as `kloop intercept --traffic`.
	Traffic string `json:"traffic,omitempty"`
	// Outbound adds include and exclude rules for the program's outbound
	// connections, as kloop intercept --outbound-include/--outbound-exclude.
	Outbound session.OutboundRules `json:"outbound,omitzero"`
}

// kloopOnlyKeys are launch attributes Delve must not see, because the bridge owns what
// they mean (Delve would otherwise build, redirect output or pick a console itself).
var kloopOnlyKeys = []string{
	"type", "name", "request", "workload", "port", "header", "path", "pathRegex", "method", "match", "program", "args", "env", "cwd",
	"buildFlags", "endWithProgram", "relaunchOnSave", "replayOnSave", "traffic", "outbound", "mode", "output", "outputMode", "stdoutTo", "stderrTo",
	"console", "dlvCwd", "backend", "noDebug", "__sessionId", "__configurationTarget",
}

// delveKeys are the launch attributes Delve's DAP server reads (service/dap/types.go
// of the pinned Delve), beyond those the bridge owns.
var delveKeys = []string{
	"stopOnEntry", "stackTraceDepth", "showGlobalVariables", "showRegisters", "showPprofLabels",
	"hideSystemGoroutines", "goroutineFilters", "substitutePath", "guessSubstitutePath",
	"followExec", "followExecRegex", "maxStringLen", "maxArrayValues", "showRawStrings",
	"traceDirPath", "coreFilePath", "stdinFrom", "processId", "waitFor",
}

// editorKeys are attributes editors keep in a launch configuration for themselves.
var editorKeys = []string{
	"preLaunchTask", "postDebugTask", "internalConsoleOptions", "debugServer", "presentation",
	"serverReadyAction", "__restart", "showLog", "logOutput", "trace",
}

// unknownLaunchKeys names the attributes of raw that neither the bridge, Delve nor the
// editor reads, each with the known one it is probably a typo of (or ""): Delve ignores
// unknown attributes, so a misspelled "workload" would debug locally without a word.
func unknownLaunchKeys(raw json.RawMessage) [][2]string {
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return nil
	}
	known := map[string]bool{}
	for _, list := range [][]string{kloopOnlyKeys, delveKeys, editorKeys} {
		for _, k := range list {
			known[k] = true
		}
	}
	var out [][2]string
	for k := range m {
		if known[k] {
			continue
		}
		best, bestDist := "", 3
		for c := range known {
			if strings.HasPrefix(c, "__") {
				continue
			}
			if d := editDistance(strings.ToLower(k), strings.ToLower(c)); d < bestDist {
				best, bestDist = c, d
			}
		}
		out = append(out, [2]string{k, best})
	}
	sort.Slice(out, func(i, j int) bool { return out[i][0] < out[j][0] })
	return out
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// parseLaunchConfig decodes the launch arguments, keeping the untouched remainder for Delve.
func parseLaunchConfig(raw json.RawMessage) (LaunchConfig, map[string]json.RawMessage, error) {
	var cfg LaunchConfig
	if len(raw) == 0 {
		return cfg, nil, errors.New(`launch request has no arguments: give at least "program"`)
	}
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return cfg, nil, fmt.Errorf("launch configuration is invalid: %w", err)
	}
	var rest map[string]json.RawMessage
	if err := json.Unmarshal(raw, &rest); err != nil {
		return cfg, nil, fmt.Errorf("launch configuration is not a JSON object: %w", err)
	}
	var mode string
	if m, ok := rest["mode"]; ok {
		_ = json.Unmarshal(m, &mode)
	}
	if mode != "" && mode != "debug" {
		return cfg, nil, fmt.Errorf(`launch configuration has "mode": %q: kloop always builds and debugs the program itself; remove "mode"`, mode)
	}
	if nd, ok := rest["noDebug"]; ok && string(nd) == "true" {
		return cfg, nil, errors.New(`"noDebug" is not supported by the kloop debug adapter: use "kloop intercept" without --debug to run without the debugger`)
	}
	// The rule is checked here so the editor hears at once what is wrong
	// with it, before anything builds or the workload is touched.
	if rule := (tunnel.RuleSpec{Header: cfg.Header, Path: cfg.Path, PathRegex: cfg.PathRegex, Method: cfg.Method, Match: cfg.Match}); !rule.Empty() {
		if cfg.Workload == "" {
			return cfg, nil, errors.New(`launch configuration has a personal rule ("header", "path", "pathRegex", "method" or "match") but no "workload": the rule chooses which of a workload's requests reach you; add "workload" or remove the rule`)
		}
		if _, err := tunnel.NewFilter(rule); err != nil {
			return cfg, nil, fmt.Errorf("launch configuration: %w", err)
		}
	}
	if cfg.Traffic != "" {
		if cfg.Workload == "" {
			return cfg, nil, errors.New(`launch configuration has "traffic" but no "workload": the mode says who answers a workload's requests; add "workload" or remove "traffic"`)
		}
		if err := config.CheckTraffic(cfg.Traffic); err != nil {
			return cfg, nil, fmt.Errorf("launch configuration: %w", err)
		}
	}
	if len(cfg.Outbound.Include)+len(cfg.Outbound.Exclude) > 0 {
		if cfg.Workload == "" {
			return cfg, nil, errors.New(`launch configuration has "outbound" but no "workload": outbound rules choose what goes through an intercepted workload's pod; add "workload" or remove "outbound"`)
		}
		if _, err := outbound.New(cfg.Outbound.Include, cfg.Outbound.Exclude, outbound.Options{}); err != nil {
			return cfg, nil, fmt.Errorf(`launch configuration "outbound": %w`, err)
		}
	}
	for _, k := range kloopOnlyKeys {
		delete(rest, k)
	}
	return cfg, rest, nil
}

// delveLaunchArgs builds the `launch` arguments for Delve: exec mode on the binary the
// session built, so Delve never compiles anything. The program's environment is the
// worker's own (the session sets it), so no "env" is passed.
func delveLaunchArgs(passThrough map[string]json.RawMessage, binary, cwd string, args []string) (json.RawMessage, error) {
	m := make(map[string]any, len(passThrough)+6)
	for k, v := range passThrough {
		m[k] = v
	}
	m["request"] = "launch"
	m["mode"] = "exec"
	m["program"] = binary
	m["cwd"] = cwd
	if args == nil {
		args = []string{}
	}
	m["args"] = args
	out, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode Delve launch arguments: %w", err)
	}
	return out, nil
}

// restartArgs wraps the launch arguments the way Delve's restart request reads them,
// with rebuild off: the bridge has already built the new binary.
func restartArgs(launch json.RawMessage) (json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(launch, &m); err != nil {
		return nil, fmt.Errorf("decode launch arguments: %w", err)
	}
	m["rebuild"] = json.RawMessage("false")
	out, err := json.Marshal(map[string]any{"arguments": m})
	if err != nil {
		return nil, fmt.Errorf("encode restart arguments: %w", err)
	}
	return out, nil
}

// target says what to build and from where.
type target struct {
	dir     string // the package's directory
	pkg     string // argument to go build there: "." or a file name
	display string // what the user named, for messages
}

// resolveProgram turns the launch config's program into a build target and checks that it
// exists, so a typo gets a message about the path rather than a compiler error.
func resolveProgram(program, baseDir string) (target, error) {
	if strings.TrimSpace(program) == "" {
		return target{}, errors.New(`launch configuration has no "program": set it to the main package directory, e.g. "./cmd/server"`)
	}
	path := program
	if !filepath.IsAbs(path) {
		path = filepath.Join(baseDir, path)
	}
	info, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return target{}, fmt.Errorf("program %q does not exist (looked at %s): point \"program\" at a main package directory or .go file", program, path)
		}
		return target{}, fmt.Errorf("program %q: %w", program, err)
	}
	if info.IsDir() {
		return target{dir: path, pkg: ".", display: program}, nil
	}
	if filepath.Ext(path) != ".go" {
		return target{}, fmt.Errorf("program %q is a file but not a .go file: point \"program\" at a main package directory", program)
	}
	return target{dir: filepath.Dir(path), pkg: filepath.Base(path), display: program}, nil
}
