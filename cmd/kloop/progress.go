//go:build !agentonly

package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/kloop/kloop/server"
)

// progressLine shows long work in the terminal: one line rewritten in place
// on a terminal, one line per step otherwise (CI logs, pipes).
type progressLine struct {
	w     io.Writer
	tty   bool
	start time.Time

	mu    sync.Mutex
	shown bool
}

func newProgressLine(w io.Writer) *progressLine {
	tty := false
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	return &progressLine{w: w, tty: tty, start: time.Now()}
}

func (p *progressLine) update(ev server.ProgressEvent) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var b strings.Builder
	b.WriteString(ev.Title)
	if ev.Message != "" {
		b.WriteString(": " + ev.Message)
	}
	if ev.Percentage >= 0 {
		fmt.Fprintf(&b, " (%d%%)", ev.Percentage)
	}
	fmt.Fprintf(&b, " [%.1fs]", time.Since(p.start).Seconds())
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s", b.String())
		p.shown = true
		if ev.Done {
			fmt.Fprintln(p.w)
			p.shown = false
		}
		return
	}
	fmt.Fprintln(p.w, b.String())
}

func (p *progressLine) message(msg string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shown {
		fmt.Fprintln(p.w)
		p.shown = false
	}
	fmt.Fprintln(p.w, msg)
}

func (p *progressLine) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shown {
		fmt.Fprintln(p.w)
		p.shown = false
	}
}
