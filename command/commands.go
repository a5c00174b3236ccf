package command

import (
	"context"

	"github.com/kloop/kloop/session"
)

// The commands. Adding one is a declaration here, its argument type with a
// Validate method, and the session method it runs; the dispatch, the
// command list, the CLI's client and commands.json follow (run `go
// generate ./command` and add the editors' entries the tests ask for).
var (
	Claim = declare("kloop.claim", "Claim a dev namespace", `{"pool":"dev","for":"8h"}`, "Claiming a dev namespace",
		func(ctx context.Context, s *session.Session, a session.ClaimArgs, p session.Progress) (*session.ClaimStatus, error) {
			return s.Claim(ctx, a, p)
		})

	Release = declare("kloop.release", "Release the dev namespace", `{}`, "Releasing the dev namespace",
		func(ctx context.Context, s *session.Session, a session.ReleaseArgs, p session.Progress) (session.Status, error) {
			err := s.Release(ctx, a, p)
			return s.Status(), err
		})

	Intercept = declare("kloop.intercept", "Intercept a workload",
		`{"workload":"deployment/orders","port":"8080","header":{"x-dev":"me"},"program":"./cmd/orders"}`, "Intercepting",
		func(ctx context.Context, s *session.Session, a session.InterceptArgs, p session.Progress) (*session.InterceptStatus, error) {
			return s.Intercept(ctx, a, p)
		})

	Leave = declare("kloop.leave", "Leave intercepts", `{"workload":"deployment/orders"} or {"all":true}`, "Leaving intercepts",
		func(ctx context.Context, s *session.Session, a session.LeaveArgs, p session.Progress) (session.Status, error) {
			err := s.Leave(ctx, a, p)
			return s.Status(), err
		})

	Status = declare("kloop.status", "Show status", `{}`, "",
		func(_ context.Context, s *session.Session, _ NoArgs, _ session.Progress) (session.Status, error) {
			return s.Status(), nil
		})

	Relaunch = declare("kloop.relaunch", "Relaunch now", `{"workload":"deployment/orders"}`, "Relaunching",
		func(ctx context.Context, s *session.Session, a session.RelaunchArgs, p session.Progress) (session.Status, error) {
			err := s.Relaunch(ctx, a, p)
			return s.Status(), err
		})

	Logs = declare("kloop.logs", "Show program output", `{"program":"./cmd/orders","tail":100}`, "",
		func(ctx context.Context, s *session.Session, a session.LogsArgs, _ session.Progress) (*session.LogsResult, error) {
			return s.Logs(ctx, a)
		})

	Requests = declare("kloop.requests", "List recorded requests", `{"workload":"deployment/orders"}`, "",
		func(ctx context.Context, s *session.Session, a session.RequestsArgs, _ session.Progress) (*session.RequestsResult, error) {
			return s.Requests(ctx, a)
		})

	Replay = declare("kloop.replay", "Replay a recorded request", `{"id":12} or {} for the last`, "Replaying a request",
		func(ctx context.Context, s *session.Session, a session.ReplayArgs, p session.Progress) (*session.ReplayResult, error) {
			return s.Replay(ctx, a, p)
		})

	Doctor = declare("kloop.doctor", "Check the cluster, permissions and daemon", `{}`, "Checking kloop's setup",
		func(ctx context.Context, s *session.Session, a session.DoctorArgs, p session.Progress) (*session.DoctorReport, error) {
			return s.Doctor(ctx, a, p)
		})

	Export = declare("kloop.export", "Export a recorded request as a Go test", `{"id":12,"format":"go-test"}`, "",
		func(ctx context.Context, s *session.Session, a session.ExportArgs, _ session.Progress) (*session.ExportResult, error) {
			return s.Export(ctx, a)
		})

	AgentInstall = declare("kloop.agent.install", "Install a resident agent (intercepts without a rollout)",
		`{"workload":"deployment/orders","ports":["http"]}`, "Installing the kloop agent",
		func(ctx context.Context, s *session.Session, a session.AgentInstallArgs, p session.Progress) (*session.AgentInstallResult, error) {
			return s.InstallAgent(ctx, a, p)
		})

	AgentUninstall = declare("kloop.agent.uninstall", "Uninstall a resident agent", `{"workload":"deployment/orders"}`, "Removing the kloop agent",
		func(ctx context.Context, s *session.Session, a session.AgentUninstallArgs, p session.Progress) (session.Status, error) {
			err := s.UninstallAgent(ctx, a, p)
			return s.Status(), err
		})

	Env = declare("kloop.env", "Copy workload env", `{"workload":"deployment/orders","format":"dotenv"}`, "",
		func(ctx context.Context, s *session.Session, a session.EnvArgs, _ session.Progress) (*session.EnvResult, error) {
			return s.Env(ctx, a)
		})

	Workloads = declare("kloop.workloads", "List the namespace's workloads", `{}`, "",
		func(ctx context.Context, s *session.Session, a session.WorkloadsArgs, _ session.Progress) (*session.WorkloadsResult, error) {
			return s.Workloads(ctx, a)
		})
)
