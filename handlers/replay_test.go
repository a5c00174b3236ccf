package handlers

import (
	"net/http"
	"testing"
	"time"

	"github.com/kloop/kloop/session"
	"github.com/kloop/kloop/session/capture"
)

func TestReplaySummary(t *testing.T) {
	req := capture.Exchange{ID: 3, Method: http.MethodGet, Target: "/orders/1"}
	for _, tc := range []struct {
		name string
		res  session.ReplayResult
		want string
	}{
		{"same", session.ReplayResult{Request: req, Response: &capture.Response{Status: 200}, Pid: 11, Duration: 1500 * time.Microsecond, Same: true},
			"kloop: replayed #3 GET /orders/1 to pid 11: 200 in 1.5ms, same answer as recorded"},
		{"changed", session.ReplayResult{Request: req, Response: &capture.Response{Status: 500}, Pid: 12, Duration: time.Millisecond,
			Diff: []string{"status: 200 → 500", `$.build: "v1" → "v2"`}},
			"kloop: replayed #3 GET /orders/1 to pid 12: 500 in 1ms; the answer changed:\n  status: 200 → 500\n  $.build: \"v1\" → \"v2\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := replaySummary(&tc.res); got != tc.want {
				t.Errorf("replaySummary:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestExperimentalFlag(t *testing.T) {
	for _, tc := range []struct {
		raw  string
		want bool
	}{
		{`{"kloopReplayView":true}`, true},
		{`{"kloopReplayView":false,"kloopOutput":true}`, false},
		{`{"kloopReplayView":"yes"}`, false},
		{``, false},
		{`[1]`, false},
	} {
		if got := experimentalFlag([]byte(tc.raw), ExperimentalReplayView); got != tc.want {
			t.Errorf("experimentalFlag(%s) = %v; want %v", tc.raw, got, tc.want)
		}
	}
}
