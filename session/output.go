package session

// Program output goes to the editors (as events) and into a bounded ring in
// memory per program, never to the daemon log: a program that prints its
// configuration would put the pod's secrets on disk, in a file that grows
// for as long as the program talks.

// ProgramOutputLines is how many of a program's last output lines a
// session keeps.
const ProgramOutputLines = 1000

// programOutputBytes bounds the text a ring keeps as well (a line can be up
// to 64 KiB): the oldest lines go first when either bound is reached.
const programOutputBytes = 4 << 20

// outputRing keeps the last lines of one program, oldest first from start.
type outputRing struct {
	lines []OutputLine // at most ProgramOutputLines, used as a circle
	start int
	bytes int
}

func (r *outputRing) add(l OutputLine) {
	if len(r.lines) < ProgramOutputLines {
		r.lines = append(r.lines, l)
	} else {
		r.bytes -= len(r.lines[r.start].Line)
		r.lines[r.start] = l
		r.start = (r.start + 1) % len(r.lines)
	}
	r.bytes += len(l.Line)
	if r.bytes <= programOutputBytes {
		return
	}
	// Too much text: drop the oldest lines (never the newest), and go on
	// from a ring that is not full.
	lines := r.ordered()
	drop := 0
	for r.bytes > programOutputBytes && drop < len(lines)-1 {
		r.bytes -= len(lines[drop].Line)
		drop++
	}
	r.lines, r.start = lines[drop:], 0
}

func (r *outputRing) ordered() []OutputLine {
	out := make([]OutputLine, 0, len(r.lines))
	out = append(out, r.lines[r.start:]...)
	return append(out, r.lines[:r.start]...)
}

// keepOutput adds a line to its program's ring.
func (s *Session) keepOutput(l OutputLine) {
	s.outMu.Lock()
	defer s.outMu.Unlock()
	if s.outputs == nil {
		s.outputs = map[string]*outputRing{}
	}
	r := s.outputs[l.Program]
	if r == nil {
		r = &outputRing{}
		s.outputs[l.Program] = r
	}
	r.add(l)
}

// ProgramOutput returns the last lines (at most ProgramOutputLines) that the
// session's program name wrote to stdout and stderr, oldest first, across
// its relaunches; nil when it wrote none. name is the program as its
// OutputLines and ProcessStatus name it. The lines are kept in memory only.
func (s *Session) ProgramOutput(name string) []OutputLine {
	s.outMu.Lock()
	defer s.outMu.Unlock()
	r := s.outputs[name]
	if r == nil || len(r.lines) == 0 {
		return nil
	}
	return r.ordered()
}
