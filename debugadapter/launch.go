package debugadapter

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
)

// LaunchConfig is the part of a `"type":"kloop"` launch configuration the bridge acts
// on. Every other attribute (stopOnEntry, maxStringLen, substitutePath, ...) goes to
// Delve unchanged.
type LaunchConfig struct {
	Workload   string            `json:"workload,omitempty"`
	Program    string            `json:"program"`
	Port       string            `json:"port,omitempty"`
	Header     map[string]string `json:"header,omitempty"`
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
}

// kloopOnlyKeys are launch attributes Delve must not see, because the bridge owns what
// they mean (Delve would otherwise build, redirect output or pick a console itself).
var kloopOnlyKeys = []string{
	"type", "name", "request", "workload", "port", "header", "program", "args", "env", "cwd",
	"buildFlags", "endWithProgram", "relaunchOnSave", "mode", "output", "outputMode", "stdoutTo", "stderrTo",
	"console", "dlvCwd", "backend", "noDebug", "__sessionId", "__configurationTarget",
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
	for _, k := range kloopOnlyKeys {
		delete(rest, k)
	}
	return cfg, rest, nil
}

// delveLaunchArgs builds the `launch` arguments for Delve: exec mode on the binary the
// bridge built, so Delve never compiles anything.
func delveLaunchArgs(passThrough map[string]json.RawMessage, binary, cwd string, args []string, env map[string]string) (json.RawMessage, error) {
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
	if len(env) > 0 {
		m["env"] = env
	}
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

// processDir is where the program runs: the configured cwd, else the package directory
// (what vscode-go does).
func processDir(cfg LaunchConfig, baseDir string, t target) string {
	if cfg.Cwd == "" {
		return t.dir
	}
	if filepath.IsAbs(cfg.Cwd) {
		return cfg.Cwd
	}
	return filepath.Join(baseDir, cfg.Cwd)
}

// mergeEnv layers the launch config's env over the environment the daemon resolved
// (pod env, KLOOP_ROOT, proxy), so a user can override one variable locally.
func mergeEnv(resolved, configured map[string]string) map[string]string {
	out := make(map[string]string, len(resolved)+len(configured))
	for k, v := range resolved {
		out[k] = v
	}
	for k, v := range configured {
		out[k] = v
	}
	return out
}
