package debugadapter

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// debugBinaryName is the file name of every program the bridge runs under Delve, so a
// later daemon can recognise debuggees whose worker was killed before it could clean up.
const debugBinaryName = "kloop-debug-bin"

// ReapOrphans kills this user's debuggees that no debug worker owns any more: Delve
// gives a debuggee no parent-death signal, so when a worker is SIGKILLed its program
// keeps running and keeps its port. The daemon calls this on start. It returns the
// pids it killed.
func ReapOrphans() []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	uid := os.Getuid()
	var killed []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if !isDebuggee(pid, uid) {
			continue
		}
		if ppid, ok := parentOf(pid); ok && isWorker(ppid) {
			continue
		}
		killProcessGroups([]int{pid})
		killed = append(killed, pid)
	}
	return killed
}

func isDebuggee(pid, uid int) bool {
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join("/proc", strconv.Itoa(pid)), &st); err != nil || int(st.Uid) != uid {
		return false
	}
	exe, err := os.Readlink(filepath.Join("/proc", strconv.Itoa(pid), "exe"))
	if err != nil {
		return false
	}
	// A replaced binary shows as "path (deleted)".
	exe = strings.TrimSuffix(exe, " (deleted)")
	return filepath.Base(exe) == debugBinaryName
}

func isWorker(pid int) bool {
	cmdline, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil {
		return false
	}
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	return len(args) >= 2 && args[1] == "debug-worker"
}
