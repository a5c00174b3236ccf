package session

import (
	"context"
	"slices"
	"time"

	"github.com/kloop/kloop/session/run"
)

// recoverTimeout bounds the clean-up a starting daemon does for a crashed
// one, so an unreachable cluster cannot keep it busy forever.
const recoverTimeout = 2 * time.Minute

func (s *Session) recordIntercept(rec InterceptRecord) error {
	return s.mgr.opts.Store.update(func(st *State) {
		ss := st.session(s.root)
		ss.Intercepts = slices.DeleteFunc(ss.Intercepts, func(r InterceptRecord) bool { return r.Workload == rec.Workload })
		ss.Intercepts = append(ss.Intercepts, rec)
	})
}

func (s *Session) forgetIntercept(workload string) error {
	return s.mgr.opts.Store.update(func(st *State) {
		ss := st.session(s.root)
		ss.Intercepts = slices.DeleteFunc(ss.Intercepts, func(r InterceptRecord) bool { return r.Workload == workload })
		ss.Processes = slices.DeleteFunc(ss.Processes, func(r ProcessRecord) bool { return r.Workload == workload })
	})
}

// recordProcess replaces the workload's process record of the same role:
// a relaunch replaces the process.
func (s *Session) recordProcess(rec ProcessRecord) error {
	return s.mgr.opts.Store.update(func(st *State) {
		ss := st.session(s.root)
		ss.Processes = slices.DeleteFunc(ss.Processes, func(r ProcessRecord) bool {
			return r.Workload == rec.Workload && r.Role == rec.Role
		})
		ss.Processes = append(ss.Processes, rec)
	})
}

// forgetProcesses drops every process record of key (a workload or a
// local debug session) once its processes are gone.
func (s *Session) forgetProcesses(key string) error {
	return s.mgr.opts.Store.update(func(st *State) {
		ss := st.session(s.root)
		ss.Processes = slices.DeleteFunc(ss.Processes, func(r ProcessRecord) bool { return r.Workload == key })
	})
}

// recoverLeftovers cleans up after a daemon that died holding intercepts
// and processes: it kills the programs (a new daemon cannot adopt their
// output or their swap gate) and restores the workloads from the
// cluster's annotations. The agent has already sent their traffic back to
// the app when the tunnel dropped; this puts the original spec back. The
// volumes materialized for those intercepts are removed at once: their
// programs are gone, and they hold secrets.
func (m *Manager) recoverLeftovers() {
	if m.opts.Store == nil {
		return
	}
	st, err := m.opts.Store.Load()
	if err != nil {
		m.log.Error("read recorded intercepts", "err", err)
		return
	}
	for root, ss := range st.Sessions {
		for _, p := range ss.Processes {
			killed, err := run.KillOrphan(context.Background(), p.Pid, p.Pgid, p.StartTime, 2*time.Second)
			switch {
			case err != nil:
				m.log.Warn("kill program left by the previous daemon", "workspace", root, "pid", p.Pid, "err", err)
			case killed:
				m.log.Info("killed program left by the previous daemon", "workspace", root, "workload", p.Workload, "role", p.Role, "pid", p.Pid)
			}
		}
		for _, rec := range ss.Intercepts {
			m.removeLeftRoots(root, rec.Workload)
		}
		if len(ss.Intercepts) == 0 {
			if len(ss.Processes) > 0 {
				s := m.Open(root)
				for _, p := range ss.Processes {
					if err := s.forgetIntercept(p.Workload); err != nil {
						m.log.Error("record process clean-up", "workspace", root, "err", err)
					}
				}
			}
			continue
		}
		engine := m.opts.Engines.Intercepts
		s := m.Open(root)
		var recs []InterceptRecord
		for _, rec := range ss.Intercepts {
			if rec.Traffic.Inbound() {
				recs = append(recs, rec)
				continue
			}
			// Nothing of it is in the cluster: its files are gone above.
			if err := s.forgetIntercept(rec.Workload); err != nil {
				m.log.Error("record clean-up", "workspace", root, "err", err)
			}
		}
		if len(recs) == 0 {
			continue
		}
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), recoverTimeout)
			defer cancel()
			for _, rec := range recs {
				if engine == nil {
					m.log.Error("intercept left by the previous daemon, and this one cannot restore it: run `kloop leave --all` with a full kloop", "workspace", root, "workload", rec.Workload)
					continue
				}
				if _, err := engine.Restore(ctx, rec.Target, rec.Workload, NoProgress{}); err != nil {
					m.log.Error("restore workload left intercepted by the previous daemon; run `kloop leave --all`", "workspace", root, "workload", rec.Workload, "err", err)
					continue
				}
				m.log.Info("restored workload left intercepted by the previous daemon", "workspace", root, "workload", rec.Workload)
				if err := s.forgetIntercept(rec.Workload); err != nil {
					m.log.Error("record restore", "workspace", root, "err", err)
				}
			}
		}()
	}
}
