package server

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kloop/kloop/kube/doctor"
)

// TestHealthChecksTheSocketAsDesigned: a private socket that a process of
// this user serves is healthy; loosened modes are named with their fix.
func TestHealthChecksTheSocketAsDesigned(t *testing.T) {
	tests := []struct {
		name       string
		dirMode    os.FileMode
		sockMode   os.FileMode
		listen     bool
		wantStatus string
		want       string
	}{
		{"private and served", 0o700, 0o600, true, doctor.OK, "socket 0600 in a private directory, peer uid checked"},
		{"socket open to others", 0o700, 0o666, true, doctor.Fail, "socket mode 0666 lets others connect"},
		{"shared directory", 0o755, 0o600, true, doctor.Fail, "is mode 0755 (want 0700)"},
		{"nobody listens", 0o700, 0o600, false, doctor.Fail, "connect to the socket"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "run")
			if err := os.Mkdir(dir, tt.dirMode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(dir, tt.dirMode); err != nil {
				t.Fatal(err)
			}
			sock := filepath.Join(dir, "daemon.sock")
			ln, err := net.Listen("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			if tt.listen {
				defer ln.Close()
				go func() {
					for {
						c, err := ln.Accept()
						if err != nil {
							return
						}
						c.Close()
					}
				}()
			} else {
				// Closing a unix listener removes its file; a dead daemon's
				// socket file stays, so put one back.
				ln.(*net.UnixListener).SetUnlinkOnClose(false)
				ln.Close()
			}
			if err := os.Chmod(sock, tt.sockMode); err != nil {
				t.Fatal(err)
			}
			fs := health(Paths{Socket: sock}, "v-test")
			if len(fs) != 1 || fs[0].Status != tt.wantStatus || !strings.Contains(fs[0].Detail, tt.want) {
				t.Fatalf("health = %+v, want %s with %q", fs, tt.wantStatus, tt.want)
			}
			if tt.wantStatus == doctor.Fail && fs[0].Fix == "" {
				t.Errorf("a failed daemon check says no fix: %+v", fs[0])
			}
		})
	}
}
