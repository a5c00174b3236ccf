package debugadapter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
)

// reply is one response Delve sent to a request the bridge made itself.
type reply struct {
	envelope
	body []byte
}

// errorText is the most specific reason an error response gives: Delve puts a summary
// in "message" ("Failed to launch") and the cause in body.error.format.
func (r reply) errorText() string {
	var body struct {
		Error *struct {
			Format string `json:"format"`
		} `json:"error"`
	}
	var whole struct {
		Body json.RawMessage `json:"body"`
	}
	if json.Unmarshal(r.body, &whole) == nil && len(whole.Body) > 0 && json.Unmarshal(whole.Body, &body) == nil &&
		body.Error != nil && body.Error.Format != "" {
		return body.Error.Format
	}
	return orDefault(r.Message, "no reason given")
}

// pendingRequest is a request sent to Delve and not yet answered.
type pendingRequest struct {
	editorSeq int          // the editor's seq to answer with; unused for the bridge's own
	replies   chan reply   // set for the bridge's own requests
	observe   func([]byte) // sees the answer to an editor's request before the editor
}

// workerConn is the bridge's DAP client side of one worker. Requests get the worker
// direction's own seq; the pending table maps answers back to who asked.
type workerConn struct {
	w          *worker
	out        *frameWriter
	readerDone chan struct{}

	mu      sync.Mutex
	pending map[int]pendingRequest
	reverse map[int]int // editor-side seq of a Delve request -> Delve's seq
}

func newWorkerConn(w *worker) *workerConn {
	return &workerConn{
		w:          w,
		out:        &frameWriter{w: w.conn},
		readerDone: make(chan struct{}),
		pending:    map[int]pendingRequest{},
		reverse:    map[int]int{},
	}
}

func (wc *workerConn) alive() bool {
	select {
	case <-wc.readerDone:
		return false
	default:
		return wc.w.alive()
	}
}

// forward relays an editor request; its answer goes back to the editor as editorSeq,
// seen first by observe when set.
func (wc *workerConn) forward(body []byte, editorSeq int, command string, observe func([]byte)) error {
	_, err := wc.out.send(body, -1, func(seq int) {
		wc.mu.Lock()
		wc.pending[seq] = pendingRequest{editorSeq: editorSeq, observe: observe}
		wc.mu.Unlock()
	})
	if err != nil {
		return fmt.Errorf("forward %s: %w", command, err)
	}
	return nil
}

// start sends a request of the bridge's own. Every response to it, duplicates
// included, arrives on the returned channel and never reaches the editor.
func (wc *workerConn) start(command string, arguments json.RawMessage) (<-chan reply, error) {
	msg := map[string]any{"seq": 0, "type": "request", "command": command}
	if len(arguments) > 0 {
		msg["arguments"] = arguments
	}
	body, err := json.Marshal(msg)
	if err != nil {
		return nil, fmt.Errorf("encode %s request: %w", command, err)
	}
	return wc.startRaw(body, command)
}

func (wc *workerConn) startRaw(body []byte, command string) (<-chan reply, error) {
	replies := make(chan reply, 4)
	_, err := wc.out.send(body, -1, func(seq int) {
		wc.mu.Lock()
		wc.pending[seq] = pendingRequest{replies: replies}
		wc.mu.Unlock()
	})
	if err != nil {
		return nil, fmt.Errorf("send %s to the debugger: %w", command, err)
	}
	return replies, nil
}

// call sends a request of the bridge's own and waits for the first answer.
func (wc *workerConn) call(ctx context.Context, command string, arguments json.RawMessage) (reply, error) {
	replies, err := wc.start(command, arguments)
	if err != nil {
		return reply{}, err
	}
	select {
	case r := <-replies:
		return r, nil
	case <-wc.readerDone:
		return reply{}, fmt.Errorf("%s: %w", command, errWorkerGone)
	case <-ctx.Done():
		return reply{}, fmt.Errorf("%s: %w", command, ctx.Err())
	}
}

var errWorkerGone = errors.New("the debug worker exited (its output above may say why)")

// take finds who asked for request_seq. An editor's request is answered once; later
// answers to it are duplicates and are dropped. The bridge's own requests stay
// registered so that their duplicates reach the bridge, not the editor.
func (wc *workerConn) take(requestSeq int) (pendingRequest, bool) {
	wc.mu.Lock()
	defer wc.mu.Unlock()
	p, ok := wc.pending[requestSeq]
	if !ok {
		return p, false
	}
	if p.replies == nil {
		delete(wc.pending, requestSeq)
	}
	return p, true
}

func (wc *workerConn) addReverse(editorSeq, delveSeq int) {
	wc.mu.Lock()
	wc.reverse[editorSeq] = delveSeq
	wc.mu.Unlock()
}

func (wc *workerConn) takeReverse(editorSeq int) (int, bool) {
	wc.mu.Lock()
	defer wc.mu.Unlock()
	d, ok := wc.reverse[editorSeq]
	delete(wc.reverse, editorSeq)
	return d, ok
}
