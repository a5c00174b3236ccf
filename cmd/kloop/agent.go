package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kloop/kloop/agent"
)

// newAgentCmd is `kloop agent`, the sidecar injected into intercepted pods.
// Its flags are what kube/intercept writes into the container spec; each
// falls back to an environment variable so a Secret can supply the token.
func newAgentCmd() *cobra.Command {
	var (
		forwards  []string
		control   string
		tokenFile string
		pod       string
	)
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Install or remove a resident traffic agent (run with --forward, it is the agent itself)",
		Long: `kloop agent install WORKLOAD keeps the traffic agent in WORKLOAD's pods, so
intercepts start without a rollout; kloop agent uninstall WORKLOAD removes it.

Run with --forward, kloop agent is the in-cluster agent itself: kloop
intercept and kloop agent install write that command into the pod template.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(forwards) == 0 {
				if env := os.Getenv("KLOOP_AGENT_FORWARD"); env != "" {
					forwards = strings.Split(env, ",")
				}
			}
			if len(forwards) == 0 {
				return errors.New("agent: name what to do: install WORKLOAD or uninstall WORKLOAD (or --forward LISTEN=APP to run as the in-cluster agent, as the pod template does)")
			}
			cfg := agent.Config{
				Control: envDefault(control, "KLOOP_AGENT_CONTROL"),
				Pod:     envDefault(pod, "POD_NAME"),
				Logger:  slog.New(slog.NewJSONHandler(os.Stderr, nil)),
			}
			for _, f := range forwards {
				fwd, err := agent.ParseForward(strings.TrimSpace(f))
				if err != nil {
					return err
				}
				cfg.Forwards = append(cfg.Forwards, fwd)
			}
			token, err := agentToken(envDefault(tokenFile, "KLOOP_AGENT_TOKEN_FILE"))
			if err != nil {
				return err
			}
			cfg.Token = token
			return agent.Run(cmd.Context(), cfg)
		},
	}
	cmd.Flags().StringArrayVar(&forwards, "forward", nil, "LISTEN_PORT=APP_HOST:APP_PORT[/http|/tcp], once per intercepted container port (env KLOOP_AGENT_FORWARD, comma-separated)")
	cmd.Flags().StringVar(&control, "control", "", "loopback address for the daemon's tunnel (env KLOOP_AGENT_CONTROL, default "+agent.DefaultControlAddr+")")
	cmd.Flags().StringVar(&tokenFile, "token-file", "", "file holding the intercept token (env KLOOP_AGENT_TOKEN_FILE; or the token itself in KLOOP_AGENT_TOKEN)")
	cmd.Flags().StringVar(&pod, "pod", "", "this pod's name, reported to clients (env POD_NAME)")
	cmd.AddCommand(agentSubcommands()...)
	return cmd
}

func envDefault(flag, env string) string {
	if flag != "" {
		return flag
	}
	return os.Getenv(env)
}

// agentToken reads the token from a file (a mounted Secret) or, without one,
// from KLOOP_AGENT_TOKEN (a secretKeyRef).
func agentToken(file string) (string, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("read agent token: %w", err)
		}
		token := strings.TrimSpace(string(b))
		if token == "" {
			return "", fmt.Errorf("agent token file %s is empty; the intercept's Secret must hold the token", file)
		}
		return token, nil
	}
	return strings.TrimSpace(os.Getenv("KLOOP_AGENT_TOKEN")), nil
}
