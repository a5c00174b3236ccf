package debugadapter

import (
	"encoding/json"
	"sync"
)

// breakpoints remembers the editor's last breakpoint requests (source, function,
// exception and instruction breakpoints, with their conditions, hit counts and log
// messages, as sent) and what Delve answered, so that the bridge can set them on a new
// process itself: an editor that ignores a second `initialized` still stops at them.
type breakpoints struct {
	mu    sync.Mutex
	sets  map[string]*breakpointSet // by key: the command, plus the source path
	order []string
}

type breakpointSet struct {
	command string
	args    json.RawMessage
	result  []breakpointResult
}

// breakpointResult is what the editor was told about one breakpoint.
type breakpointResult struct {
	ID       int    `json:"id,omitempty"`
	Verified bool   `json:"verified"`
	Line     int    `json:"line,omitempty"`
	Message  string `json:"message,omitempty"`
}

func breakpointKey(command string, args json.RawMessage) string {
	if command != "setBreakpoints" {
		return command
	}
	var a struct {
		Source struct {
			Path string `json:"path"`
		} `json:"source"`
	}
	_ = json.Unmarshal(args, &a)
	return command + " " + a.Source.Path
}

// remember records a breakpoint request and returns the observer of Delve's answer.
func (m *breakpoints) remember(command string, args json.RawMessage) func([]byte) {
	key := breakpointKey(command, args)
	m.mu.Lock()
	if m.sets == nil {
		m.sets = map[string]*breakpointSet{}
	}
	if _, ok := m.sets[key]; !ok {
		m.order = append(m.order, key)
	}
	set := &breakpointSet{command: command, args: append(json.RawMessage(nil), args...)}
	m.sets[key] = set
	m.mu.Unlock()
	return func(body []byte) {
		results, ok := decodeBreakpointResults(body)
		if !ok {
			return
		}
		m.mu.Lock()
		set.result = results
		m.mu.Unlock()
	}
}

// all lists the remembered requests in the order the editor first sent them.
func (m *breakpoints) all() []breakpointSet {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]breakpointSet, 0, len(m.order))
	for _, k := range m.order {
		s := m.sets[k]
		out = append(out, breakpointSet{command: s.command, args: s.args, result: append([]breakpointResult(nil), s.result...)})
	}
	return out
}

// replaced records the answer a replayed request got and returns the breakpoints whose
// verification or line changed, under the ids the editor knows them by.
func (m *breakpoints) replaced(command string, args json.RawMessage, body []byte) []breakpointResult {
	results, ok := decodeBreakpointResults(body)
	if !ok {
		return nil
	}
	key := breakpointKey(command, args)
	m.mu.Lock()
	defer m.mu.Unlock()
	set := m.sets[key]
	if set == nil {
		return nil
	}
	var changed []breakpointResult
	for i, r := range results {
		if i >= len(set.result) {
			break
		}
		old := set.result[i]
		if r.ID != 0 && old.ID != 0 {
			// The editor knows the old id; a new debugger may number anew.
			r.ID = old.ID
		}
		if r.Verified != old.Verified || (r.Line != 0 && r.Line != old.Line) {
			changed = append(changed, r)
		}
		results[i] = r
	}
	set.result = results
	return changed
}

// decodeBreakpointResults reads body.breakpoints of a successful response.
func decodeBreakpointResults(body []byte) ([]breakpointResult, bool) {
	var resp struct {
		Success bool `json:"success"`
		Body    struct {
			Breakpoints []breakpointResult `json:"breakpoints"`
		} `json:"body"`
	}
	if json.Unmarshal(body, &resp) != nil || !resp.Success {
		return nil, false
	}
	return resp.Body.Breakpoints, true
}
