package server

import (
	"context"
	"sync"

	"go.lsp.dev/jsonrpc2"
)

// noticeStream remembers the last error the daemon sent that answers no
// request. That is how the daemon explains hanging up (a refused peer);
// jsonrpc2 drops such a response, so without this the CLI could only
// report the disconnect, not its reason.
type noticeStream struct {
	jsonrpc2.Stream

	mu   sync.Mutex
	last error
}

func (s *noticeStream) Read(ctx context.Context) (jsonrpc2.Message, int64, error) {
	m, n, err := s.Stream.Read(ctx)
	if r, ok := m.(*jsonrpc2.Response); ok && !r.ID().IsValid() && r.Err() != nil {
		s.mu.Lock()
		s.last = r.Err()
		s.mu.Unlock()
	}
	return m, n, err
}

// notice returns the daemon's last unaddressed error, or nil.
func (s *noticeStream) notice() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}
