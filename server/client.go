package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"

	"go.lsp.dev/jsonrpc2"
	"go.lsp.dev/protocol"
	"go.lsp.dev/uri"

	"github.com/kloop/kloop/handlers"
	"github.com/kloop/kloop/session"
)

// ProgressEvent is one $/progress report the daemon sent the CLI.
type ProgressEvent struct {
	Title      string
	Message    string
	Percentage int // -1 when unknown
	Done       bool
}

// ClientOptions configure Connect.
type ClientOptions struct {
	Dial DialOptions
	// Workspace is the folder whose session the CLI acts on.
	Workspace string
	// OnProgress receives progress reports; nil ignores them.
	OnProgress func(ProgressEvent)
	// OnMessage receives window/showMessage text; nil ignores it.
	OnMessage func(string)
	// OnOutput receives the local program's output lines (kloop/output);
	// nil ignores them.
	OnOutput func(session.OutputLine)
	// OnStatus receives every kloop/status notification; nil ignores them.
	OnStatus func(session.Status)
}

// Client is the CLI's connection to the daemon. It speaks the same LSP the
// editors do, so `kloop claim` and an editor's code action share one state.
type Client struct {
	nc     net.Conn
	conn   jsonrpc2.Conn
	server protocol.Server
}

// Connect dials (or starts) the daemon and initializes an LSP session for
// the workspace. A daemon that hangs up before answering initialize was on
// its way out (idle exit, or killed): Connect starts over, like Forward.
func Connect(ctx context.Context, opts ClientOptions) (*Client, error) {
	for attempt := 1; ; attempt++ {
		c, err := connectOnce(ctx, opts)
		if !errors.Is(err, errNoAnswer) || attempt >= maxConnectAttempts || ctx.Err() != nil {
			return c, err
		}
	}
}

// errNoAnswer marks a connection the daemon closed before answering.
var errNoAnswer = errors.New("the daemon closed the connection without answering")

func connectOnce(ctx context.Context, opts ClientOptions) (*Client, error) {
	nc, err := Dial(ctx, opts.Dial)
	if err != nil {
		return nil, err
	}
	stream := &noticeStream{Stream: jsonrpc2.NewStream(nc)}
	conn := jsonrpc2.NewConn(stream, jsonrpc2.WithCodec(Codec{}))
	cc := &cliClient{opts: opts, titles: map[string]string{}}
	conn.Go(ctx, Detached(ctx, protocol.ClientHandler(cc, func(ctx context.Context, req *jsonrpc2.Request) (any, error) {
		switch req.Method() {
		case handlers.MethodStatus:
			if opts.OnStatus != nil {
				var st session.Status
				if err := json.Unmarshal(req.Params(), &st); err == nil {
					opts.OnStatus(st)
				}
			}
			return nil, nil
		case handlers.MethodOutput:
			if opts.OnOutput != nil {
				var l session.OutputLine
				if err := json.Unmarshal(req.Params(), &l); err == nil {
					opts.OnOutput(l)
				}
			}
			return nil, nil
		}
		return jsonrpc2.MethodNotFoundHandler(ctx, req)
	})))
	c := &Client{nc: nc, conn: conn, server: protocol.ServerDispatcher(conn)}
	yes := true
	params := &protocol.InitializeParams{
		ClientInfo: protocol.ClientInfo{Name: "kloop-cli"},
		Capabilities: protocol.ClientCapabilities{
			Window: &protocol.WindowClientCapabilities{WorkDoneProgress: &yes},
			// The CLI streams the program's stdout and stderr apart, and
			// prints a replay's outcome itself.
			Experimental: []byte(`{"` + handlers.ExperimentalOutput + `":true,"` + handlers.ExperimentalReplayView + `":true}`),
		},
	}
	pid := int32(os.Getpid())
	params.ProcessID = &pid
	if opts.Workspace != "" {
		u := uri.File(opts.Workspace)
		//lint:ignore SA1019 the daemon reads rootUri like any editor's; one folder is all the CLI has
		params.RootURI = &u
	}
	if _, err := c.server.Initialize(ctx, params); err != nil {
		c.nc.Close()
		if notice := stream.notice(); notice != nil {
			// The daemon said why it hung up (a refused peer); that
			// message already names the daemon and what to do.
			return nil, notice
		}
		var rpcErr *jsonrpc2.Error
		if !errors.As(err, &rpcErr) {
			err = fmt.Errorf("%w: %w", errNoAnswer, err)
		}
		return nil, fmt.Errorf("initialize with the daemon: %w", err)
	}
	if err := c.server.Initialized(ctx, &protocol.InitializedParams{}); err != nil {
		c.nc.Close()
		return nil, fmt.Errorf("initialize with the daemon: %w", err)
	}
	return c, nil
}

// Execute runs a kloop.* command with args (nil for none) and decodes its
// result into result (nil to discard).
func (c *Client) Execute(ctx context.Context, command string, args any, result any) error {
	params := &protocol.ExecuteCommandParams{Command: command}
	if args != nil {
		data, err := json.Marshal(args)
		if err != nil {
			return fmt.Errorf("encode %s arguments: %w", command, err)
		}
		params.Arguments = []protocol.LSPAny{protocol.LSPAny(data)}
	}
	raw, err := c.server.ExecuteCommand(ctx, params)
	if err != nil {
		return err
	}
	if result != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, result); err != nil {
			return fmt.Errorf("decode %s result: %w", command, err)
		}
	}
	return nil
}

// Call sends a kloop/* request that is not a workspace command.
func (c *Client) Call(ctx context.Context, method string, params, result any) error {
	_, err := c.conn.Call(ctx, method, params, result)
	return err
}

// Close ends the LSP session politely and closes the socket.
func (c *Client) Close(ctx context.Context) error {
	_ = c.server.Shutdown(ctx)
	_ = c.server.Exit(ctx)
	return c.conn.Close()
}

// cliClient is the client side of the CLI's LSP connection.
type cliClient struct {
	protocol.UnimplementedClient
	opts ClientOptions

	mu     sync.Mutex
	titles map[string]string
}

func (c *cliClient) WorkDoneProgressCreate(context.Context, *protocol.WorkDoneProgressCreateParams) error {
	return nil
}

func (c *cliClient) Progress(_ context.Context, params *protocol.ProgressParams) error {
	if c.opts.OnProgress == nil {
		return nil
	}
	key := fmt.Sprint(params.Token)
	var v struct {
		Kind       string  `json:"kind"`
		Title      string  `json:"title"`
		Message    *string `json:"message"`
		Percentage *int    `json:"percentage"`
	}
	if err := json.Unmarshal(params.Value, &v); err != nil {
		return nil
	}
	c.mu.Lock()
	if v.Kind == "begin" {
		c.titles[key] = v.Title
	}
	title := c.titles[key]
	if v.Kind == "end" {
		delete(c.titles, key)
	}
	c.mu.Unlock()
	ev := ProgressEvent{Title: title, Percentage: -1, Done: v.Kind == "end"}
	if v.Message != nil {
		ev.Message = *v.Message
	}
	if v.Percentage != nil {
		ev.Percentage = *v.Percentage
	}
	c.opts.OnProgress(ev)
	return nil
}

func (c *cliClient) ShowMessage(_ context.Context, params *protocol.ShowMessageParams) error {
	if c.opts.OnMessage != nil {
		c.opts.OnMessage(params.Message)
	}
	return nil
}

func (c *cliClient) LogMessage(context.Context, *protocol.LogMessageParams) error { return nil }

func (c *cliClient) PublishDiagnostics(context.Context, *protocol.PublishDiagnosticsParams) error {
	return nil
}
