package run

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// procStat is what the relaunch loop needs from /proc/<pid>/stat.
type procStat struct {
	pid       int
	state     byte
	pgrp      int
	startTime uint64 // clock ticks since boot
}

func (s procStat) alive() bool { return s.state != 'Z' && s.state != 'X' }

func readProcStat(pid int) (procStat, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return procStat{}, err
	}
	return parseProcStat(pid, b)
}

// parseProcStat reads fields after the command name, which is in
// parentheses and may itself contain spaces and parentheses.
func parseProcStat(pid int, b []byte) (procStat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("parse /proc/%d/stat: no command name", pid)
	}
	fields := strings.Fields(string(b[i+1:]))
	// fields[0] is field 3 (state); pgrp is field 5, starttime field 22.
	if len(fields) < 20 {
		return procStat{}, fmt.Errorf("parse /proc/%d/stat: %d fields", pid, len(fields))
	}
	pgrp, err := strconv.Atoi(fields[2])
	if err != nil {
		return procStat{}, fmt.Errorf("parse /proc/%d/stat pgrp: %w", pid, err)
	}
	start, err := strconv.ParseUint(fields[19], 10, 64)
	if err != nil {
		return procStat{}, fmt.Errorf("parse /proc/%d/stat starttime: %w", pid, err)
	}
	return procStat{pid: pid, state: fields[0][0], pgrp: pgrp, startTime: start}, nil
}

// ProcStartTime returns the start time of pid (clock ticks since boot, from
// /proc/<pid>/stat). Persist it beside the pid: together they identify the
// process even after the pid is reused.
func ProcStartTime(pid int) (uint64, error) {
	st, err := readProcStat(pid)
	if err != nil {
		return 0, fmt.Errorf("read start time of pid %d: %w", pid, err)
	}
	return st.startTime, nil
}

// liveGroupMembers lists the processes of group pgid that have not exited.
func liveGroupMembers(pgid int) []procStat {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []procStat
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := readProcStat(pid)
		if err != nil || st.pgrp != pgid || !st.alive() {
			continue
		}
		out = append(out, st)
	}
	return out
}

// KillOrphan ends a process group left behind by an earlier daemon, but only
// if it is still the group that daemon started: the leader pid must have the
// recorded start time, or, when the leader is gone, the remaining members
// must have started no earlier than it. A pid reused by an unrelated process
// is left alone. It sends SIGTERM, waits up to grace, then SIGKILLs the
// group. killed reports whether anything was signalled.
func KillOrphan(ctx context.Context, pid, pgid int, startTime uint64, grace time.Duration) (killed bool, err error) {
	if pid <= 1 || pgid <= 1 {
		return false, fmt.Errorf("kill orphan: refusing pid %d / process group %d", pid, pgid)
	}
	leader, err := readProcStat(pid)
	switch {
	case err == nil && leader.startTime == startTime && leader.alive():
		// Still ours.
	case err == nil && leader.pgrp == pgid && leader.startTime != startTime:
		// The pid now leads another group of the same number: not ours.
		return false, nil
	default:
		members := liveGroupMembers(pgid)
		ours := false
		for _, m := range members {
			if m.startTime >= startTime {
				ours = true
			}
		}
		if !ours {
			return false, nil
		}
	}
	if err := killGroup(ctx, pgid, grace); err != nil {
		return true, fmt.Errorf("kill orphan process group %d (pid %d): %w", pgid, pid, err)
	}
	return true, nil
}

// killGroup SIGTERMs a group, waits for it to empty, then SIGKILLs it.
func killGroup(ctx context.Context, pgid int, grace time.Duration) error {
	if err := syscall.Kill(-pgid, syscall.SIGTERM); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return nil
		}
		return fmt.Errorf("SIGTERM: %w", err)
	}
	if waitGroupGone(ctx, pgid, grace) {
		return nil
	}
	if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("SIGKILL: %w", err)
	}
	if !waitGroupGone(ctx, pgid, 5*time.Second) {
		return fmt.Errorf("still running after SIGKILL")
	}
	return nil
}

func waitGroupGone(ctx context.Context, pgid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if len(liveGroupMembers(pgid)) == 0 {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// listenerOwner names the process listening on a local TCP port, as
// "pid 123 (python3)", or "" when it cannot be told (another user's process,
// no /proc).
func listenerOwner(port int) string {
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Scan() // header
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 10 || fields[3] != "0A" { // 0A = LISTEN
				continue
			}
			i := strings.LastIndexByte(fields[1], ':')
			p, err := strconv.ParseUint(fields[1][i+1:], 16, 16)
			if err == nil && int(p) == port {
				inodes["socket:["+fields[9]+"]"] = true
			}
		}
	}
	if len(inodes) == 0 {
		return ""
	}
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		fdDir := filepath.Join("/proc", p.Name(), "fd")
		fds, err := os.ReadDir(fdDir)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			link, err := os.Readlink(filepath.Join(fdDir, fd.Name()))
			if err == nil && inodes[link] {
				comm, _ := os.ReadFile(filepath.Join("/proc", p.Name(), "comm"))
				return fmt.Sprintf("pid %d (%s)", pid, strings.TrimSpace(string(comm)))
			}
		}
	}
	return ""
}

// AcceptQueueLen returns how many connections wait in the kernel's accept
// queue of the socket listening on port (from /proc/net/tcp and tcp6);
// ok is false when no listener was found.
func AcceptQueueLen(port int) (n int, ok bool) {
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		lines := strings.Split(string(b), "\n")
		for _, line := range lines[min(1, len(lines)):] {
			fields := strings.Fields(line)
			if len(fields) < 5 || fields[3] != "0A" {
				continue
			}
			i := strings.LastIndexByte(fields[1], ':')
			p, err := strconv.ParseUint(fields[1][i+1:], 16, 16)
			if err != nil || int(p) != port {
				continue
			}
			// For a listener, rx_queue is the accept queue length.
			j := strings.IndexByte(fields[4], ':')
			q, err := strconv.ParseUint(fields[4][j+1:], 16, 32)
			if err != nil {
				continue
			}
			n += int(q)
			ok = true
		}
	}
	return n, ok
}
