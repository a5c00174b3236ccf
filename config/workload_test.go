package config

import (
	"encoding/json"
	"testing"

	"github.com/kloop/kloop/kube/workload"
)

func TestParsePort(t *testing.T) {
	tests := []struct {
		in            string
		remote, local int
		wantErr       string
	}{
		{in: "8080", remote: 8080, local: 8080},
		{in: "8080:3000", remote: 8080, local: 3000},
		{in: "1:65535", remote: 1, local: 65535},
		{in: "08080", remote: 8080, local: 8080},
		{in: "", wantErr: `port "": port number is empty; write REMOTE or REMOTE:LOCAL, such as 8080 or 8080:3000`},
		{in: "0", wantErr: `port "0": 0 is out of range 1..65535; write REMOTE or REMOTE:LOCAL, such as 8080 or 8080:3000`},
		{in: "65536", wantErr: `port "65536": 65536 is out of range 1..65535; write REMOTE or REMOTE:LOCAL, such as 8080 or 8080:3000`},
		{in: "99999999999999999999", wantErr: `port "99999999999999999999": 99999999999999999999 is out of range 1..65535; write REMOTE or REMOTE:LOCAL, such as 8080 or 8080:3000`},
		{in: "-1", wantErr: `port "-1": "-1" is not a port number; write REMOTE or REMOTE:LOCAL, such as 8080 or 8080:3000`},
		{in: "8080:", wantErr: `port "8080:": port number is empty; write REMOTE or REMOTE:LOCAL, such as 8080 or 8080:3000`},
		{in: ":3000", wantErr: `port ":3000": port number is empty; write REMOTE or REMOTE:LOCAL, such as 8080 or 8080:3000`},
		{in: "1:2:3", wantErr: `port "1:2:3": "2:3" is not a port number; write REMOTE or REMOTE:LOCAL, such as 8080 or 8080:3000`},
		{in: "http", wantErr: `port "http": "http" is not a port number; write REMOTE or REMOTE:LOCAL, such as 8080 or 8080:3000`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			r, l, err := ParsePort(tt.in)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("ParsePort(%q) error = %v, want %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil || r != tt.remote || l != tt.local {
				t.Fatalf("ParsePort(%q) = %d, %d, %v; want %d, %d", tt.in, r, l, err, tt.remote, tt.local)
			}
		})
	}
}

func TestPortString(t *testing.T) {
	for p, want := range map[Port]string{
		{}:                         "",
		{Remote: 80, Local: 80}:    "80",
		{Remote: 80, Local: 8080}:  "80:8080",
		{Remote: 443, Local: 8443}: "443:8443",
	} {
		if got := p.String(); got != want {
			t.Errorf("%#v.String() = %q, want %q", p, got, want)
		}
	}
}

// The daemon and `-o json` carry intercepts as JSON; workloads and ports
// must stay in the form users write.
func TestInterceptJSONRoundTrip(t *testing.T) {
	in := Intercept{Name: "orders", Workload: workload.Workload{Kind: workload.StatefulSet, Name: "orders"}, Port: Port{8080, 3000}}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"name":"orders","workload":"statefulset/orders","port":"8080:3000"}`
	if string(b) != want {
		t.Errorf("json = %s, want %s", b, want)
	}
	var out Intercept
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if out.Name != in.Name || out.Workload != in.Workload || out.Port != in.Port {
		t.Errorf("round trip = %+v, want %+v", out, in)
	}
	if b, _ := json.Marshal(Intercept{Name: "a", Workload: workload.Workload{Kind: workload.Deployment, Name: "a"}}); string(b) != `{"name":"a","workload":"deployment/a"}` {
		t.Errorf("json without port = %s, want no port key", b)
	}
	if err := json.Unmarshal([]byte(`{"workload":"foo/x"}`), &out); err == nil {
		t.Error("json.Unmarshal accepted workload foo/x")
	}
}
