package dap

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	godap "github.com/google/go-dap"
	"golang.org/x/sys/unix"
)

// denyPtraceEnv makes the test binary, when re-executed with it, install a seccomp filter
// that fails ptrace(2) with EPERM and then exec `kloop dap` (the variable holds its path),
// whose daemon inherits the filter: the situation of a container without SYS_PTRACE,
// reproduced without touching the machine's sysctl.
const denyPtraceEnv = "KLOOP_TEST_DENY_PTRACE_EXEC"

func execWithoutPtrace() {
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		fmt.Fprintln(os.Stderr, "no_new_privs:", err)
		os.Exit(2)
	}
	filter := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 0}, // syscall number
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: 1, K: unix.SYS_PTRACE},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
	}
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	if _, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&prog))); errno != 0 {
		fmt.Fprintln(os.Stderr, "seccomp:", errno)
		os.Exit(2)
	}
	kloop := os.Getenv(denyPtraceEnv)
	if err := syscall.Exec(kloop, []string{kloop, "dap"}, os.Environ()); err != nil {
		fmt.Fprintln(os.Stderr, "exec:", err)
		os.Exit(2)
	}
}

func TestPtraceDeniedSaysHowToFix(t *testing.T) {
	fx := newFixture(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// The daemon this `kloop dap` starts inherits the filter; it is its own, so
	// the package's shared daemon keeps ptrace.
	dir := t.TempDir()
	env := append(os.Environ(), "KLOOP_SOCKET="+dir+"/run/d.sock", "KLOOP_STATE_DIR="+dir+"/state")
	cmd := exec.Command(self)
	cmd.Env = append(env, denyPtraceEnv+"="+kloopBin)
	t.Cleanup(func() {
		stop := exec.Command(kloopBin, "daemon", "stop")
		stop.Env = env
		_ = stop.Run()
	})
	e := startEditorCmd(t, cmd, fx.dir)
	e.Request("initialize", godap.InitializeRequestArguments{AdapterID: "kloop", PathFormat: "path", LinesStartAt1: true, ColumnsStartAt1: true})
	resp := e.Await(e.SendRequest("launch", launchConfig(nil)), "launch")
	if resp.Success {
		t.Fatal("launch succeeded with ptrace denied")
	}
	t.Logf("launch error: %s", resp.Message)
	for _, want := range []string{"operation not permitted", "ptrace was denied", "SYS_PTRACE"} {
		if !strings.Contains(resp.Message, want) {
			t.Errorf("launch error %q does not mention %q", resp.Message, want)
		}
	}
	if procs := sessionProcs(t, env); len(procs) != 0 {
		t.Errorf("a failed launch left processes behind: %v", procs)
	}
}
