package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/kloop/kloop/config"
	"github.com/kloop/kloop/debugadapter"
	"github.com/kloop/kloop/handlers"
	"github.com/kloop/kloop/server"
	"github.com/kloop/kloop/session"
)

// daemonIntercept makes the debug session's intercept through the shared
// daemon, so the editor, the CLI and the debugger see one state: the daemon
// holds the tunnel and sends traffic to the port the debuggee listens on.
type daemonIntercept struct {
	mu        sync.Mutex
	client    *server.Client
	workload  string // set once this session made the intercept
	workspace string
}

// resolveEnv intercepts cfg.Workload (or joins the intercept this
// workspace already holds) and returns the env its program must run with.
func (d *daemonIntercept) resolveEnv(ctx context.Context, cfg debugadapter.LaunchConfig) (map[string]string, error) {
	if cfg.Workload == "" {
		return nil, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return nil, fmt.Errorf("find the workspace: %w", err)
	}
	if cfg.Cwd != "" && filepath.IsAbs(cfg.Cwd) {
		wd = cfg.Cwd
	}
	paths, err := server.DefaultPaths()
	if err != nil {
		return nil, err
	}
	ws := session.FindRoot(wd)
	c, err := server.Connect(ctx, server.ClientOptions{Dial: server.DialOptions{Paths: paths}, Workspace: ws})
	if err != nil {
		return nil, fmt.Errorf("reach the kloop daemon to intercept %s: %w", cfg.Workload, err)
	}
	d.mu.Lock()
	d.client, d.workspace = c, ws
	d.mu.Unlock()

	if _, err := config.ParseWorkload(cfg.Workload); err != nil {
		return nil, fmt.Errorf("launch configuration \"workload\": %w", err)
	}
	// One call decides whether this session makes the intercept or joins
	// one this workspace holds: a status check first would race with a
	// previous session that is still leaving it.
	args := session.InterceptArgs{Workload: cfg.Workload, Port: cfg.Port, Header: cfg.Header, Debug: true, Reuse: true}
	var in session.InterceptStatus
	if err := c.Execute(ctx, handlers.CmdIntercept, args, &in); err != nil {
		return nil, fmt.Errorf("intercept %s: %w", cfg.Workload, err)
	}
	if !in.Reused {
		d.mu.Lock()
		d.workload = in.Workload
		d.mu.Unlock()
	}
	var res session.EnvResult
	if err := c.Execute(ctx, handlers.CmdEnv, session.EnvArgs{Workload: cfg.Workload, Format: "json"}, &res); err != nil {
		return nil, fmt.Errorf("environment of %s: %w", cfg.Workload, err)
	}
	var vars map[string]string
	if err := json.Unmarshal([]byte(res.Content), &vars); err != nil {
		return nil, fmt.Errorf("decode the environment of %s: %w", cfg.Workload, err)
	}
	return vars, nil
}

// leave ends the intercept this session made, if any.
func (d *daemonIntercept) leave(ctx context.Context) {
	d.mu.Lock()
	c, w := d.client, d.workload
	d.mu.Unlock()
	if c == nil {
		return
	}
	defer c.Close(ctx)
	if w == "" {
		return
	}
	if err := c.Execute(ctx, handlers.CmdLeave, session.LeaveArgs{Workload: w}, nil); err != nil {
		fmt.Fprintf(os.Stderr, "kloop dap: leave %s: %v (run `kloop leave %s`)\n", w, err, w)
	}
}
