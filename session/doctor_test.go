package session

import (
	"context"
	"strings"
	"testing"
)

type doctorEngine struct{ findings []Finding }

func (d doctorEngine) Doctor(context.Context, Target, string) []Finding { return d.findings }

func TestDoctorReport(t *testing.T) {
	tests := []struct {
		name        string
		engine      DoctorEngine
		health      func() []Finding
		clients     []ClientInfo
		wantHealthy bool
		wantDetail  map[string]string // check -> part of its detail
		wantFix     string            // part of the editor finding's fix
	}{
		{
			name: "standalone, no editor", engine: doctorEngine{[]Finding{{Check: "cluster", Status: "ok", Detail: "API server x"}}},
			wantHealthy: true,
			wantDetail:  map[string]string{"cluster": "API server x", "daemon": "standalone", "editor": "no editor has connected"},
		},
		{
			name: "a failed cluster check fails the report", engine: doctorEngine{[]Finding{{Check: "permissions/intercept", Status: "fail", Detail: "not allowed"}}},
			health:      func() []Finding { return []Finding{{Check: "daemon", Status: "ok", Detail: "socket 0600"}} },
			clients:     []ClientInfo{{Name: "Neovim", Version: "0.7.2"}, {Name: "Visual Studio Code", Version: "1.96.0", Extension: "0.4.0"}},
			wantHealthy: false,
			wantDetail:  map[string]string{"daemon": "socket 0600", "editor": "Neovim 0.7.2 (kloop extension version not sent); Visual Studio Code 1.96.0 (kloop extension 0.4.0)"},
			// Both of kloop's extensions send it now: one that does not is old.
			wantFix: "kloop's VS Code extension and Neovim plugin send it: one listed without a version is older than this kloop, so update it",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewManager(Options{Engines: Engines{Doctor: tt.engine}, Health: tt.health})
			s := m.Open(t.TempDir())
			for _, c := range tt.clients {
				s.NoteClient(c)
			}
			rep, err := s.Doctor(t.Context(), DoctorArgs{}, NoProgress{})
			if err != nil {
				t.Fatal(err)
			}
			if rep.Healthy != tt.wantHealthy {
				t.Errorf("healthy = %v, want %v: %+v", rep.Healthy, tt.wantHealthy, rep.Findings)
			}
			for _, f := range rep.Findings {
				if f.Check == "editor" && !strings.Contains(f.Fix, tt.wantFix) {
					t.Errorf("editor fix %q, want it to contain %q", f.Fix, tt.wantFix)
				}
			}
			for check, want := range tt.wantDetail {
				found := false
				for _, f := range rep.Findings {
					if f.Check == check {
						found = true
						if !strings.Contains(f.Detail, want) {
							t.Errorf("%s: %q, want it to contain %q", check, f.Detail, want)
						}
					}
				}
				if !found {
					t.Errorf("no %s finding in %+v", check, rep.Findings)
				}
			}
		})
	}
}
