package debugadapter

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParseLaunchConfig(t *testing.T) {
	tests := []struct {
		name        string
		in          string
		wantErr     string
		wantProgram string
		wantPass    []string // keys that must reach Delve
		wantDropped []string // keys that must not
		wantReplay  bool
		wantTraffic string
	}{
		{name: "full", in: `{"type":"kloop","request":"launch","workload":"orders","program":"./cmd/orders","port":"8080","header":{"x-dev":"me"},"args":["-v"],"env":{"A":"1"},"buildFlags":["-tags=dev"],"stopOnEntry":true,"maxStringLen":100}`,
			wantProgram: "./cmd/orders", wantPass: []string{"stopOnEntry", "maxStringLen"}, wantDropped: []string{"workload", "program", "env", "args", "buildFlags", "type"}},
		{name: "delve output options dropped", in: `{"program":".","outputMode":"remote","console":"integratedTerminal","output":"x","mode":"debug"}`,
			wantProgram: ".", wantDropped: []string{"outputMode", "console", "output", "mode"}},
		{name: "replayOnSave is kloop's", in: `{"program":".","replayOnSave":true}`,
			wantProgram: ".", wantDropped: []string{"replayOnSave"}, wantReplay: true},
		{name: "filter is kloop's", in: `{"program":".","workload":"orders","header":{"x-dev":"me","x-team":"pay"},"path":"/api/","pathRegex":"^/v[0-9]+/","method":["GET","post"],"match":"any"}`,
			wantProgram: ".", wantDropped: []string{"header", "path", "pathRegex", "method", "match"}},
		{name: "traffic is kloop's", in: `{"program":".","workload":"orders","traffic":"mirror"}`,
			wantProgram: ".", wantTraffic: "mirror", wantDropped: []string{"traffic"}},
		{name: "bad traffic refused", in: `{"program":".","workload":"orders","traffic":"mirorr"}`, wantErr: `launch configuration: traffic "mirorr" is not one of steal, mirror`},
		{name: "traffic without workload refused", in: `{"program":".","traffic":"mirror"}`, wantErr: `"traffic" but no "workload"`},
		{name: "bad path regex refused with its offset", in: `{"program":".","workload":"orders","pathRegex":"^/v[0-9+/orders"}`, wantErr: `launch configuration: path regex "^/v[0-9+/orders" at offset 3: missing closing ]`},
		{name: "bad method refused", in: `{"program":".","workload":"orders","method":["GET,GTE"]}`, wantErr: `method "GTE" (item 2 of "GET,GTE") is not an HTTP method`},
		{name: "bad match refused", in: `{"program":".","workload":"orders","path":"/a","match":"some"}`, wantErr: `match "some" is not all or any`},
		{name: "rule without workload refused", in: `{"program":".","path":"/api/"}`, wantErr: `no "workload"`},
		{name: "outbound is kloop's", in: `{"program":".","workload":"orders","outbound":{"include":["*.internal"],"exclude":["users:8080"]}}`,
			wantProgram: ".", wantDropped: []string{"outbound"}},
		{name: "bad outbound rule refused", in: `{"program":".","workload":"orders","outbound":{"exclude":["10.0.0.0/40"]}}`,
			wantErr: `launch configuration "outbound": exclude: outbound rule "10.0.0.0/40": "10.0.0.0/40" is not a CIDR`},
		{name: "outbound without workload refused", in: `{"program":".","outbound":{"include":["users"]}}`, wantErr: `"outbound" but no "workload"`},
		{name: "exec mode refused", in: `{"program":".","mode":"exec"}`, wantErr: `remove "mode"`},
		{name: "noDebug refused", in: `{"program":".","noDebug":true}`, wantErr: "noDebug"},
		{name: "wrong type", in: `{"program":42}`, wantErr: "invalid"},
		{name: "no arguments", in: ``, wantErr: "no arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, pass, err := parseLaunchConfig(json.RawMessage(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Program != tt.wantProgram {
				t.Errorf("program %q", cfg.Program)
			}
			if cfg.Traffic != tt.wantTraffic {
				t.Errorf("traffic %q, want %q", cfg.Traffic, tt.wantTraffic)
			}
			if cfg.ReplayOnSave != tt.wantReplay {
				t.Errorf("replayOnSave %v, want %v", cfg.ReplayOnSave, tt.wantReplay)
			}
			for _, k := range tt.wantPass {
				if _, ok := pass[k]; !ok {
					t.Errorf("%s does not reach Delve", k)
				}
			}
			for _, k := range tt.wantDropped {
				if _, ok := pass[k]; ok {
					t.Errorf("%s would reach Delve", k)
				}
			}
		})
	}
}

func TestDelveArgs(t *testing.T) {
	launch, err := delveLaunchArgs(map[string]json.RawMessage{"stopOnEntry": json.RawMessage("true")}, "/stage/bin", "/src", nil)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	must(t, json.Unmarshal(launch, &got))
	if got["mode"] != "exec" || got["program"] != "/stage/bin" || got["cwd"] != "/src" || got["stopOnEntry"] != true {
		t.Errorf("launch args %s", launch)
	}
	restart, err := restartArgs(launch)
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Arguments map[string]any `json:"arguments"`
	}
	must(t, json.Unmarshal(restart, &r))
	if r.Arguments["rebuild"] != false || r.Arguments["request"] != "launch" || r.Arguments["program"] != "/stage/bin" {
		t.Errorf("restart args %s", restart)
	}
}

func TestCompleteUTF8(t *testing.T) {
	euro := "€" // 3 bytes
	tests := []struct {
		in   string
		want int
	}{
		{in: "abc", want: 3},
		{in: "ab" + euro, want: 5},
		{in: "ab" + euro[:1], want: 2},
		{in: "ab" + euro[:2], want: 2},
		{in: "", want: 0},
		{in: "\xff\xfe", want: 2}, // invalid, not incomplete: pass it on
	}
	for _, tt := range tests {
		if got := completeUTF8([]byte(tt.in)); got != tt.want {
			t.Errorf("completeUTF8(%q) = %d, want %d", tt.in, got, tt.want)
		}
		if tt.want < len(tt.in) && utf8.ValidString(tt.in[:tt.want]) == false {
			t.Errorf("prefix of %q is not valid UTF-8", tt.in)
		}
	}
}

func TestExplainLaunchFailure(t *testing.T) {
	tests := []struct {
		msg, scope string
		want       []string
	}{
		{msg: "fork/exec /tmp/x: operation not permitted", scope: "3", want: []string{"ptrace was denied", "sysctl kernel.yama.ptrace_scope=0"}},
		{msg: "fork/exec /tmp/x: operation not permitted", scope: "1", want: []string{"SYS_PTRACE", "same user"}},
		{msg: "fork/exec /tmp/x: operation not permitted", scope: "", want: []string{"SYS_PTRACE"}},
		{msg: "could not open debug info", scope: "3", want: []string{"could not open debug info"}},
	}
	for _, tt := range tests {
		got := explainLaunchFailureWithScope(tt.msg, tt.scope)
		for _, w := range tt.want {
			if !strings.Contains(got, w) {
				t.Errorf("explain(%q, scope %q) = %q, want it to mention %q", tt.msg, tt.scope, got, w)
			}
		}
		if !strings.Contains(tt.msg, "permitted") && strings.Contains(got, "ptrace") {
			t.Errorf("explain(%q) blames ptrace: %q", tt.msg, got)
		}
	}
}

func TestReplyErrorText(t *testing.T) {
	tests := []struct{ body, want string }{
		{body: `{"type":"response","success":false,"message":"Failed to launch","body":{"error":{"id":3000,"format":"Failed to launch: could not launch process: boom"}}}`, want: "Failed to launch: could not launch process: boom"},
		{body: `{"type":"response","success":false,"message":"Failed to restart"}`, want: "Failed to restart"},
		{body: `{"type":"response","success":false}`, want: "no reason given"},
	}
	for _, tt := range tests {
		env, err := parseEnvelope([]byte(`{"type":"response","command":"launch"}`))
		must(t, err)
		_ = json.Unmarshal([]byte(tt.body), &env)
		if got := (reply{envelope: env, body: []byte(tt.body)}).errorText(); got != tt.want {
			t.Errorf("errorText(%s) = %q, want %q", tt.body, got, tt.want)
		}
	}
}

func TestUnknownLaunchKeys(t *testing.T) {
	tests := []struct {
		name string
		raw  string
		want [][2]string
	}{
		{"all known", `{"type":"kloop","request":"launch","name":"x","program":".","workload":"orders","stopOnEntry":true,"preLaunchTask":"build","__sessionId":"1"}`, nil},
		{"typo of a kloop attribute", `{"program":".","worklaod":"orders"}`, [][2]string{{"worklaod", "workload"}}},
		{"typo of a Delve attribute, other case", `{"program":".","StopOnEntry":true}`, [][2]string{{"StopOnEntry", "stopOnEntry"}}},
		{"nothing close", `{"program":".","envFile":"x.env","zzz":1}`, [][2]string{{"envFile", ""}, {"zzz", ""}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := unknownLaunchKeys(json.RawMessage(tt.raw))
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("unknownLaunchKeys(%s) = %v, want %v", tt.raw, got, tt.want)
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
