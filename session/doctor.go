package session

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/kloop/kloop/kube/doctor"
)

// Finding is one result of kloop.doctor (see kube/doctor).
type Finding = doctor.Finding

// DoctorArgs are the arguments of kloop.doctor / `kloop doctor`.
type DoctorArgs struct{}

// Validate implements command.Args.
func (DoctorArgs) Validate() error { return nil }

// DoctorReport is what kloop.doctor answers.
type DoctorReport struct {
	Workspace string `json:"workspace"`
	// Healthy is false when any finding failed.
	Healthy  bool      `json:"healthy"`
	Findings []Finding `json:"findings"`
}

// DoctorEngine checks the cluster a session targets (engines.Doctor
// implements it on kube/doctor).
type DoctorEngine interface {
	Doctor(ctx context.Context, target Target, agentImage string) []Finding
}

// ClientInfo is what an editor told the daemon about itself in LSP
// initialize: clientInfo, and the extension's own version from
// initializationOptions when it sends one.
type ClientInfo struct {
	Name      string    `json:"name"`
	Version   string    `json:"version,omitempty"`
	Extension string    `json:"extension,omitempty"`
	Seen      time.Time `json:"seen"`
}

// NoteClient records an editor that connected to this session, for
// kloop.doctor.
func (s *Session) NoteClient(c ClientInfo) {
	if c.Name == "" {
		return
	}
	c.Seen = time.Now().UTC()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.clients == nil {
		s.clients = map[string]ClientInfo{}
	}
	s.clients[c.Name] = c
}

// Doctor checks what this session's work needs: the workspace's settings,
// the cluster it targets (kube/doctor), the daemon, and the editors.
func (s *Session) Doctor(ctx context.Context, _ DoctorArgs, p Progress) (*DoctorReport, error) {
	rep := &DoctorReport{Workspace: s.root}
	cfg, err := s.loadConfig()
	if err != nil {
		rep.Findings = append(rep.Findings, Finding{Check: "workspace", Status: doctor.Fail, Detail: err.Error(), Fix: "fix .kloop.yaml (the editor shows each error at its line)"})
	} else {
		s.opMu.Lock()
		target, terr := s.target(cfg)
		s.opMu.Unlock()
		switch engine := s.mgr.opts.Engines.Doctor; {
		case terr != nil:
			rep.Findings = append(rep.Findings, Finding{Check: "cluster", Status: doctor.Fail, Detail: terr.Error(), Fix: "fix kubeconfig: in .kloop.yaml"})
		case engine == nil:
			rep.Findings = append(rep.Findings, Finding{Check: "cluster", Status: doctor.Warn, Detail: errNoEngine("doctor").Error()})
		default:
			p.Report("checking the cluster", 10)
			rep.Findings = append(rep.Findings, engine.Doctor(ctx, target, cfg.AgentImage)...)
		}
	}
	p.Report("checking the daemon", 90)
	if h := s.mgr.opts.Health; h != nil {
		rep.Findings = append(rep.Findings, h()...)
	} else {
		rep.Findings = append(rep.Findings, Finding{Check: "daemon", Status: doctor.OK, Detail: "kloop serves in-process (standalone): no daemon or socket to check"})
	}
	rep.Findings = append(rep.Findings, s.editorFinding())
	rep.Healthy = doctor.Healthy(rep.Findings)
	return rep, nil
}

func (s *Session) editorFinding() Finding {
	s.mu.Lock()
	clients := make([]ClientInfo, 0, len(s.clients))
	for _, c := range s.clients {
		clients = append(clients, c)
	}
	s.mu.Unlock()
	sort.Slice(clients, func(i, j int) bool { return clients[i].Name < clients[j].Name })
	f := Finding{Check: "editor", Status: doctor.OK}
	if len(clients) == 0 {
		f.Detail = "no editor has connected to this workspace's session"
		return f
	}
	var parts []string
	unknown := false
	for _, c := range clients {
		d := c.Name
		if c.Version != "" {
			d += " " + c.Version
		}
		if c.Extension != "" {
			d += fmt.Sprintf(" (kloop extension %s)", c.Extension)
		} else {
			unknown = true
			d += " (kloop extension version not sent)"
		}
		parts = append(parts, d)
	}
	f.Detail = strings.Join(parts, "; ")
	if unknown {
		// kloop's VS Code extension and Neovim plugin send it; GoLand's
		// LSP4IJ template and other LSP clients do not, and need not.
		f.Fix = "an editor that does not send initializationOptions.extensionVersion (GoLand's LSP4IJ template, other LSP clients) cannot be checked against this kloop; nothing to do unless kloop's commands fail from it. kloop's VS Code extension and Neovim plugin send it: one listed without a version is older than this kloop, so update it"
	}
	return f
}
