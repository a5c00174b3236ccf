package server

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"

	"go.lsp.dev/jsonrpc2"
)

// MethodDaemonStats reports the serving process's resource use: `kloop
// daemon stats`, the soak test, and bug reports about a daemon that grows.
const MethodDaemonStats = "kloop/daemonStats"

// DaemonStatsParams are the request's params (optional).
type DaemonStatsParams struct {
	// GC collects garbage first, so HeapAllocBytes is the live heap.
	GC bool `json:"gc,omitempty"`
	// HeapProfile, when set, is a file the daemon writes its heap profile
	// to (pprof format, mode 0600), for `go tool pprof`.
	HeapProfile string `json:"heapProfile,omitempty"`
}

// DaemonStats is the answer of MethodDaemonStats.
type DaemonStats struct {
	PID            int    `json:"pid"`
	Version        string `json:"version"`
	Goroutines     int    `json:"goroutines"`
	HeapAllocBytes uint64 `json:"heapAllocBytes"`
	HeapObjects    uint64 `json:"heapObjects"`
	// RSSBytes is the resident set (VmRSS); 0 where /proc is missing.
	RSSBytes int64 `json:"rssBytes"`
	// OpenFiles counts file descriptors (sockets included); -1 where
	// /proc is missing.
	OpenFiles int `json:"openFiles"`
}

// daemonStats answers MethodDaemonStats for the process serving the connection.
func daemonStats(raw json.RawMessage, version string) (*DaemonStats, error) {
	var p DaemonStatsParams
	if t := strings.TrimSpace(string(raw)); t != "" && t != "null" {
		if err := json.Unmarshal(raw, &p); err != nil {
			return nil, jsonrpc2.NewError(jsonrpc2.ErrInvalidParams.Code, `kloop: kloop/daemonStats takes no params or {"gc": bool, "heapProfile": "/absolute/path"}: `+err.Error())
		}
	}
	if p.GC {
		// Twice: objects in sync.Pools survive the first collection in
		// the pools' victim caches.
		runtime.GC()
		runtime.GC()
	}
	// Read before the profile is written: writing it allocates.
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	st := &DaemonStats{
		PID:            os.Getpid(),
		Version:        version,
		Goroutines:     runtime.NumGoroutine(),
		HeapAllocBytes: ms.HeapAlloc,
		HeapObjects:    ms.HeapObjects,
		RSSBytes:       residentBytes(),
		OpenFiles:      -1,
	}
	if fds, err := os.ReadDir("/proc/self/fd"); err == nil {
		st.OpenFiles = len(fds)
	}
	if p.HeapProfile != "" {
		if err := writeHeapProfile(p.HeapProfile); err != nil {
			return nil, err
		}
	}
	return st, nil
}

func writeHeapProfile(path string) error {
	if !filepath.IsAbs(path) {
		return jsonrpc2.NewError(jsonrpc2.ErrInvalidParams.Code, fmt.Sprintf("kloop: heapProfile %q must be an absolute path (the daemon does not share your working directory)", path))
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("write heap profile: %w", err)
	}
	if err := pprof.WriteHeapProfile(f); err != nil {
		f.Close()
		return fmt.Errorf("write heap profile %s: %w", path, err)
	}
	return f.Close()
}

// residentBytes reads VmRSS from /proc/self/status.
func residentBytes() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			return 0
		}
		kib, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			return 0
		}
		return kib << 10
	}
	return 0
}
