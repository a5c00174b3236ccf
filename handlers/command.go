package handlers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"

	"go.lsp.dev/jsonrpc2"
	"go.lsp.dev/protocol"

	"github.com/kloop/kloop/config"
	"github.com/kloop/kloop/session"
)

// The commands of workspace/executeCommand. Each takes at most one
// argument, an object whose fields are the command's typed arguments.
const (
	CmdClaim     = "kloop.claim"
	CmdRelease   = "kloop.release"
	CmdIntercept = "kloop.intercept"
	CmdLeave     = "kloop.leave"
	CmdStatus    = "kloop.status"
	CmdRelaunch  = "kloop.relaunch"
	CmdEnv       = "kloop.env"
)

// Error codes kloop answers with besides JSON-RPC's own.
const (
	// CodeNotAvailable: the command exists but this build cannot do it yet.
	CodeNotAvailable = -32001
	// CodeNoWorkspace: the client named no workspace folder.
	CodeNoWorkspace = -32003
	// codeRequestFailed is LSP's RequestFailed.
	codeRequestFailed = -32803
)

// ExecuteCommand validates the arguments and runs the command on the
// connection's session.
func (s *Server) ExecuteCommand(ctx context.Context, params *protocol.ExecuteCommandParams) (protocol.LSPAny, error) {
	if err := s.ready(); err != nil {
		return nil, err
	}
	result, err := s.execute(ctx, params)
	if err != nil {
		return nil, commandError(params.Command, err)
	}
	data, err := json.Marshal(result)
	if err != nil {
		return nil, fmt.Errorf("encode %s result: %w", params.Command, err)
	}
	return protocol.LSPAny(data), nil
}

func (s *Server) execute(ctx context.Context, params *protocol.ExecuteCommandParams) (any, error) {
	cmd := params.Command
	if !isCommand(cmd) {
		return nil, jsonrpc2.NewError(jsonrpc2.ErrInvalidParams.Code, fmt.Sprintf("kloop: unknown command %q; known commands: %s", cmd, strings.Join(Commands, ", ")))
	}
	sess := s.currentSession()
	if sess == nil {
		return nil, jsonrpc2.NewError(CodeNoWorkspace, fmt.Sprintf("kloop: %s needs a workspace: open a folder (rootUri or workspaceFolders in initialize)", cmd))
	}
	token := params.WorkDoneToken
	switch cmd {
	case CmdStatus:
		if err := decodeArgs(cmd, params.Arguments, &struct{}{}); err != nil {
			return nil, err
		}
		return sess.Status(), nil
	case CmdClaim:
		var args session.ClaimArgs
		if err := decodeArgs(cmd, params.Arguments, &args); err != nil {
			return nil, err
		}
		if err := validateClaim(args); err != nil {
			return nil, invalidArg(cmd, err)
		}
		return withProgress(ctx, s, token, "Claiming a dev slot", func(p session.Progress) (any, error) {
			return sess.Claim(ctx, args, p)
		})
	case CmdRelease:
		var args session.ReleaseArgs
		if err := decodeArgs(cmd, params.Arguments, &args); err != nil {
			return nil, err
		}
		return withProgress(ctx, s, token, "Releasing the dev slot", func(p session.Progress) (any, error) {
			// The status after the release, not before it.
			if err := sess.Release(ctx, args, p); err != nil {
				return nil, err
			}
			return sess.Status(), nil
		})
	case CmdIntercept:
		var args session.InterceptArgs
		if err := decodeArgs(cmd, params.Arguments, &args); err != nil {
			return nil, err
		}
		if err := validateIntercept(args); err != nil {
			return nil, invalidArg(cmd, err)
		}
		return withProgress(ctx, s, token, "Intercepting "+args.Workload, func(p session.Progress) (any, error) {
			return sess.Intercept(ctx, args, p)
		})
	case CmdLeave:
		var args session.LeaveArgs
		if err := decodeArgs(cmd, params.Arguments, &args); err != nil {
			return nil, err
		}
		if err := validateLeave(args); err != nil {
			return nil, invalidArg(cmd, err)
		}
		return withProgress(ctx, s, token, "Leaving intercepts", func(p session.Progress) (any, error) {
			return sess.Status(), sess.Leave(ctx, args, p)
		})
	case CmdRelaunch:
		var args session.RelaunchArgs
		if err := decodeArgs(cmd, params.Arguments, &args); err != nil {
			return nil, err
		}
		if args.Workload != "" {
			if _, err := config.ParseWorkload(args.Workload); err != nil {
				return nil, invalidArg(cmd, err)
			}
		}
		return withProgress(ctx, s, token, "Relaunching", func(p session.Progress) (any, error) {
			return sess.Status(), sess.Relaunch(ctx, args, p)
		})
	case CmdEnv:
		var args session.EnvArgs
		if err := decodeArgs(cmd, params.Arguments, &args); err != nil {
			return nil, err
		}
		if err := validateEnv(args); err != nil {
			return nil, invalidArg(cmd, err)
		}
		return sess.Env(ctx, args)
	}
	return nil, fmt.Errorf("command %s has no handler", cmd)
}

// withProgress runs work under a progress report that ends with its outcome.
func withProgress(ctx context.Context, s *Server, token protocol.ProgressToken, title string, work func(session.Progress) (any, error)) (any, error) {
	p := s.startProgress(ctx, token, title)
	result, err := work(p)
	p.end(err)
	return result, err
}

func isCommand(name string) bool {
	for _, c := range Commands {
		if c == name {
			return true
		}
	}
	return false
}

// decodeArgs decodes the single object argument strictly: unknown fields
// and wrong types are errors that name the field.
func decodeArgs(cmd string, raw []protocol.LSPAny, into any) error {
	switch len(raw) {
	case 0:
		return nil
	case 1:
	default:
		return jsonrpc2.NewError(jsonrpc2.ErrInvalidParams.Code, fmt.Sprintf("kloop: %s takes one object argument, got %d arguments", cmd, len(raw)))
	}
	data := []byte(raw[0])
	if t := bytes.TrimSpace(data); len(t) == 0 || t[0] != '{' {
		if string(t) == "null" {
			return nil
		}
		return jsonrpc2.NewError(jsonrpc2.ErrInvalidParams.Code, fmt.Sprintf("kloop: %s takes an object argument such as %s, got %s", cmd, exampleArgs(cmd), truncate(t, 40)))
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		return jsonrpc2.NewError(jsonrpc2.ErrInvalidParams.Code, fmt.Sprintf("kloop: %s: %s", cmd, describeDecodeError(err, cmd)))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return jsonrpc2.NewError(jsonrpc2.ErrInvalidParams.Code, fmt.Sprintf("kloop: %s: trailing data after the argument object", cmd))
	}
	return nil
}

func describeDecodeError(err error, cmd string) string {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		return fmt.Sprintf("argument %q must be %s, not a JSON %s (example: %s)", typeErr.Field, jsonTypeName(typeErr.Type.String()), typeErr.Value, exampleArgs(cmd))
	}
	if msg := err.Error(); strings.HasPrefix(msg, "json: unknown field ") {
		return fmt.Sprintf("unknown argument %s (example: %s)", strings.TrimPrefix(msg, "json: unknown field "), exampleArgs(cmd))
	}
	return err.Error()
}

func jsonTypeName(goType string) string {
	switch {
	case goType == "string":
		return "a string"
	case goType == "bool":
		return "a boolean"
	case strings.HasPrefix(goType, "[]"):
		return "an array of " + strings.TrimSuffix(jsonTypeName(goType[2:]), "")
	case strings.HasPrefix(goType, "map["):
		return "an object of strings"
	case strings.HasPrefix(goType, "int"):
		return "a number"
	}
	return goType
}

func exampleArgs(cmd string) string {
	switch cmd {
	case CmdClaim:
		return `{"pool":"dev","for":"8h"}`
	case CmdIntercept:
		return `{"workload":"deployment/orders","port":"8080","header":{"x-dev":"me"},"program":"./cmd/orders"}`
	case CmdLeave:
		return `{"workload":"deployment/orders"} or {"all":true}`
	case CmdRelaunch:
		return `{"workload":"deployment/orders"}`
	case CmdEnv:
		return `{"workload":"deployment/orders","format":"dotenv"}`
	}
	return `{}`
}

var dnsName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

func validateClaim(a session.ClaimArgs) error {
	if a.Pool != "" && (len(a.Pool) > 63 || !dnsName.MatchString(a.Pool)) {
		return fmt.Errorf("pool %q is not a valid name: use lower-case letters, digits and '-'", a.Pool)
	}
	if a.For != "" {
		d, err := time.ParseDuration(a.For)
		if err != nil || d <= 0 {
			return fmt.Errorf("for %q: want a positive duration such as 8h or 90m", a.For)
		}
		if d > config.MaxClaimFor {
			return fmt.Errorf("for %q: a claim lasts at most %s", a.For, config.MaxClaimFor)
		}
	}
	return nil
}

func validateIntercept(a session.InterceptArgs) error {
	if a.Workload == "" {
		return fmt.Errorf("workload is required, e.g. deployment/orders")
	}
	if _, err := config.ParseWorkload(a.Workload); err != nil {
		return err
	}
	if a.Port != "" {
		if _, _, err := config.ParsePort(a.Port); err != nil {
			return err
		}
	}
	for name := range a.Header {
		if !isHeaderToken(name) {
			return fmt.Errorf("header name %q is not a valid HTTP header name", name)
		}
	}
	return nil
}

func validateLeave(a session.LeaveArgs) error {
	if a.All && a.Workload != "" {
		return fmt.Errorf("give either workload or all, not both")
	}
	if a.Workload != "" {
		if _, err := config.ParseWorkload(a.Workload); err != nil {
			return err
		}
	}
	return nil
}

func validateEnv(a session.EnvArgs) error {
	if a.Workload == "" {
		return fmt.Errorf("workload is required, e.g. deployment/orders")
	}
	if _, err := config.ParseWorkload(a.Workload); err != nil {
		return err
	}
	switch a.Format {
	case "", "dotenv", "json", "shell":
	default:
		return fmt.Errorf("format %q: want dotenv, json or shell", a.Format)
	}
	return nil
}

func isHeaderToken(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c > 127 || !(c == '-' || c == '!' || c == '#' || c == '$' || c == '%' || c == '&' || c == '\'' || c == '*' || c == '+' || c == '.' || c == '^' || c == '_' || c == '`' || c == '|' || c == '~' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
			return false
		}
	}
	return true
}

func invalidArg(cmd string, err error) error {
	return jsonrpc2.NewError(jsonrpc2.ErrInvalidParams.Code, fmt.Sprintf("kloop: %s: %v", cmd, err))
}

// commandError maps a command's failure onto a JSON-RPC error whose message
// is what the user reads in the editor.
func commandError(cmd string, err error) error {
	var rpcErr *jsonrpc2.Error
	if errors.As(err, &rpcErr) {
		return err
	}
	var na *session.NotAvailableError
	if errors.As(err, &na) {
		return jsonrpc2.NewError(CodeNotAvailable, "kloop: "+na.Error())
	}
	return jsonrpc2.NewError(codeRequestFailed, fmt.Sprintf("kloop: %s: %v", cmd, err))
}

func truncate(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	return string(b[:n]) + "…"
}
