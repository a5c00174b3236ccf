// Package command declares every kloop command once, as gopls'
// protocol/command does: its name, its title, its typed arguments (whose
// Validate method is the one place their rules live), its result, an
// example, and the session method that runs it. The LSP dispatch
// (workspace/executeCommand), the command list of initialize, the CLI's
// typed client (Call) and the editors' command list (commands.json, checked
// against the VS Code and Neovim manifests by this package's tests) are all
// derived from the declarations in commands.go.
package command

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strings"

	"github.com/kloop/kloop/session"
)

// Args are a command's arguments: one JSON object, validated before the
// command runs (by the daemon, and by the CLI before it sends them).
type Args interface {
	Validate() error
}

// NoArgs is the argument object of a command that takes none.
type NoArgs struct{}

// Validate implements Args.
func (NoArgs) Validate() error { return nil }

// Info is what the dispatch and the editors need of a command, whatever
// its types.
type Info interface {
	// Name is the workspace/executeCommand identifier, such as kloop.claim.
	Name() string
	// Title says what the command does, for palettes and progress.
	Title() string
	// Example is an argument object, as JSON.
	Example() string
	// Progress reports whether the command reports $/progress.
	Progress() bool
	// ProgressTitle titles its progress report ("Claiming a dev namespace");
	// arguments with a ProgressTitle method name it themselves.
	ProgressTitle(args any) string
	// Decode reads the (at most one) argument object strictly and
	// validates it. Its errors are *ArgsError.
	Decode(raw []json.RawMessage) (any, error)
	// Run runs the command with arguments Decode returned.
	Run(ctx context.Context, s *session.Session, args any, p session.Progress) (any, error)
}

// Command is one declared command: A its arguments, R its result.
type Command[A Args, R any] struct {
	name, title, example string
	progress             string // the progress report's title; "" for none
	run                  func(ctx context.Context, s *session.Session, args A, p session.Progress) (R, error)
}

var registry = map[string]Info{}

// declare registers a command; commands.go is the only caller.
func declare[A Args, R any](name, title, example, progress string, run func(context.Context, *session.Session, A, session.Progress) (R, error)) *Command[A, R] {
	if _, dup := registry[name]; dup {
		panic("command: " + name + " declared twice")
	}
	c := &Command[A, R]{name: name, title: title, example: example, progress: progress, run: run}
	registry[name] = c
	return c
}

// All lists the commands, sorted by name.
func All() []Info {
	out := make([]Info, 0, len(registry))
	for _, c := range registry {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name() < out[j].Name() })
	return out
}

// Names lists the command identifiers, sorted.
func Names() []string {
	var out []string
	for _, c := range All() {
		out = append(out, c.Name())
	}
	return out
}

// Lookup finds a command by name.
func Lookup(name string) (Info, bool) {
	c, ok := registry[name]
	return c, ok
}

func (c *Command[A, R]) Name() string    { return c.name }
func (c *Command[A, R]) Title() string   { return c.title }
func (c *Command[A, R]) Example() string { return c.example }
func (c *Command[A, R]) Progress() bool  { return c.progress != "" }

// ProgressTitle implements Info.
func (c *Command[A, R]) ProgressTitle(args any) string {
	if t, ok := args.(interface{ ProgressTitle() string }); ok {
		return t.ProgressTitle()
	}
	return c.progress
}

// ArgsError is an argument object that does not decode or validate: the
// daemon answers it with JSON-RPC's InvalidParams.
type ArgsError struct {
	Command string
	Reason  string
}

func (e *ArgsError) Error() string { return "kloop: " + e.Command + ": " + e.Reason }

// Decode implements Info.
func (c *Command[A, R]) Decode(raw []json.RawMessage) (any, error) {
	var args A
	switch len(raw) {
	case 0:
	case 1:
		if err := c.decodeObject(raw[0], &args); err != nil {
			return nil, err
		}
	default:
		return nil, &ArgsError{c.name, fmt.Sprintf("takes one object argument, got %d arguments", len(raw))}
	}
	if err := args.Validate(); err != nil {
		return nil, &ArgsError{c.name, err.Error()}
	}
	return args, nil
}

// decodeObject decodes the argument object strictly: unknown fields and
// wrong types are errors that name the field and show an example.
func (c *Command[A, R]) decodeObject(raw json.RawMessage, into *A) error {
	t := bytes.TrimSpace(raw)
	if string(t) == "null" {
		return nil
	}
	if len(t) == 0 || t[0] != '{' {
		return &ArgsError{c.name, fmt.Sprintf("takes an object argument such as %s, got %s", c.example, truncate(t, 40))}
	}
	dec := json.NewDecoder(bytes.NewReader(t))
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		return &ArgsError{c.name, c.describeDecodeError(err)}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return &ArgsError{c.name, "trailing data after the argument object"}
	}
	return nil
}

func (c *Command[A, R]) describeDecodeError(err error) string {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		return fmt.Sprintf("argument %q must be %s, not a JSON %s (example: %s)", typeErr.Field, jsonTypeName(typeErr.Type), typeErr.Value, c.example)
	}
	if msg := err.Error(); strings.HasPrefix(msg, "json: unknown field ") {
		return fmt.Sprintf("unknown argument %s (example: %s)", strings.TrimPrefix(msg, "json: unknown field "), c.example)
	}
	return err.Error()
}

func jsonTypeName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Slice, reflect.Array:
		return "an array of " + strings.TrimPrefix(strings.TrimPrefix(jsonTypeName(t.Elem()), "a "), "an ") + "s"
	case reflect.Map:
		return "an object of " + strings.TrimPrefix(strings.TrimPrefix(jsonTypeName(t.Elem()), "a "), "an ") + "s"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Struct:
		return "an object"
	}
	return t.String()
}

func truncate(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	return string(b[:n]) + "…"
}

// Run implements Info.
func (c *Command[A, R]) Run(ctx context.Context, s *session.Session, args any, p session.Progress) (any, error) {
	a, ok := args.(A)
	if !ok {
		return nil, fmt.Errorf("%s: arguments of type %T, want %T", c.name, args, a)
	}
	if p == nil {
		p = session.NoProgress{}
	}
	return c.run(ctx, s, a, p)
}

// Executor runs a command by name on the daemon: the CLI's connection
// (server.Client) is one.
type Executor interface {
	Execute(ctx context.Context, command string, args any, result any) error
}

// Call runs the command through x with typed arguments and result. The
// arguments are validated here first, so a mistake is reported without a
// round trip and in the same words the daemon would use.
func (c *Command[A, R]) Call(ctx context.Context, x Executor, args A) (R, error) {
	var result R
	if err := args.Validate(); err != nil {
		return result, &ArgsError{c.name, err.Error()}
	}
	err := x.Execute(ctx, c.name, args, &result)
	return result, err
}
