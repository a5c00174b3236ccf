package server

import (
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// DefaultLogMaxBytes bounds the daemon's log file. One rotated file is
// kept beside it, so the log never takes more than twice this on disk.
const DefaultLogMaxBytes = 10 << 20

// LogFile is a log file that never grows past a bound: a write that would
// take it past the bound first moves it to PATH.1 (replacing the previous
// one) and starts a new, empty file. A write larger than the bound is
// split across files, so no file ever exceeds it.
//
// The daemon's stderr may be the same file (the forwarder that starts it
// sends early crashes there): when it is, a rotation moves stderr to the
// new file too, so that a later panic lands in the log and the rotated
// file stops growing.
type LogFile struct {
	path string
	max  int64

	mu sync.Mutex
	f  *os.File
}

// OpenLogFile opens (creates, 0600) the log file at path, appending to it;
// maxBytes <= 0 means DefaultLogMaxBytes.
func OpenLogFile(path string, maxBytes int64) (*LogFile, error) {
	if maxBytes <= 0 {
		maxBytes = DefaultLogMaxBytes
	}
	l := &LogFile{path: path, max: maxBytes}
	f, err := l.open(0)
	if err != nil {
		return nil, err
	}
	l.f = f
	return l, nil
}

func (l *LogFile) open(flags int) (*os.File, error) {
	f, err := os.OpenFile(l.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND|flags, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open log %s: %w", l.path, err)
	}
	// A log written before (by an older kloop) may be open to others.
	if fi, err := f.Stat(); err == nil && fi.Mode().Perm() != 0o600 {
		_ = f.Chmod(0o600)
	}
	return f, nil
}

// Write implements io.Writer. A log line is one write, and is never split
// unless it is larger than the bound.
func (l *LogFile) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return 0, os.ErrClosed
	}
	written := 0
	for len(p) > 0 {
		// The size on disk, not a count of our own writes: stderr may
		// append to the same file.
		fi, err := l.f.Stat()
		if err != nil {
			return written, fmt.Errorf("log %s: %w", l.path, err)
		}
		size := fi.Size()
		if size > 0 && size+int64(len(p)) > l.max {
			if err := l.rotate(); err != nil {
				return written, err
			}
			size = 0
		}
		chunk := p[:min(int64(len(p)), l.max-size)]
		n, err := l.f.Write(chunk)
		written += n
		p = p[n:]
		if err != nil {
			return written, err
		}
	}
	return written, nil
}

// rotate moves the file to PATH.1 and starts a new one; the caller holds mu.
func (l *LogFile) rotate() error {
	follow := isStderr(l.f)
	// A file that cannot be moved away is cut instead (O_TRUNC): the
	// bound holds either way.
	_ = os.Rename(l.path, l.path+".1")
	f, err := l.open(os.O_TRUNC)
	if err != nil {
		return err
	}
	l.f.Close()
	l.f = f
	if follow {
		_ = unix.Dup2(int(f.Fd()), 2)
	}
	return nil
}

// isStderr reports whether the process's stderr is the file f.
func isStderr(f *os.File) bool {
	var a, b unix.Stat_t
	if unix.Fstat(2, &a) != nil || unix.Fstat(int(f.Fd()), &b) != nil {
		return false
	}
	return a.Dev == b.Dev && a.Ino == b.Ino
}

// Close closes the file; later writes fail with os.ErrClosed.
func (l *LogFile) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}
