package config

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kloop/kloop/kube/workload"
)

// fullExample is the .kloop.yaml of the design, every field used.
const fullExample = `# defaults for kloop claim
claim:
  pool: dev
  for: 8h
kubeconfig: ~/.kube/config
context: my-ctx
intercepts:
  - name: orders
    workload: deployment/orders
    program: ./cmd/orders
    port: "8080"
    header: {x-dev: me}
    args: ["--verbose"]
    env: {LOG_LEVEL: debug, PORT: 8080}
    buildFlags: ["-tags=dev"]
    readiness: {httpPath: /healthz}
    replayOnSave: true
  - name: billing
    workload: statefulset/billing
    port: 9090:3000
    build: {command: ["./gradlew", "installDist"]}
    run: {command: ["build/install/app/bin/app"]}
    watch: ["src/**/*.kt"]
    outbound:
      include: ["*.internal", "10.20.0.0/16:5432"]
      exclude: [users.dev.svc.cluster.local]
  - workload: payments
    port: 7000
    header: {x-dev: me, x-team: pay}
    path: /api/
    pathRegex: ^/v[0-9]+/orders
    method: [GET, POST]
    match: any
`

func TestParseFullExample(t *testing.T) {
	got, err := Parse(".kloop.yaml", []byte(fullExample))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	want := &Config{
		Claim:      Claim{Pool: "dev", For: 8 * time.Hour},
		Kubeconfig: "~/.kube/config",
		Context:    "my-ctx",
		Intercepts: []Intercept{
			{
				Name:         "orders",
				Workload:     workload.Workload{Kind: workload.Deployment, Name: "orders"},
				Program:      "./cmd/orders",
				Port:         Port{Remote: 8080, Local: 8080},
				Header:       map[string]string{"x-dev": "me"},
				Args:         []string{"--verbose"},
				Env:          map[string]string{"LOG_LEVEL": "debug", "PORT": "8080"},
				BuildFlags:   []string{"-tags=dev"},
				Readiness:    &Readiness{HTTPPath: "/healthz"},
				ReplayOnSave: true,
			},
			{
				Name:     "billing",
				Workload: workload.Workload{Kind: workload.StatefulSet, Name: "billing"},
				Port:     Port{Remote: 9090, Local: 3000},
				Build:    &Command{Command: []string{"./gradlew", "installDist"}},
				Run:      &Command{Command: []string{"build/install/app/bin/app"}},
				Watch:    []string{"src/**/*.kt"},
				Outbound: &Outbound{Include: []string{"*.internal", "10.20.0.0/16:5432"}, Exclude: []string{"users.dev.svc.cluster.local"}},
			},
			{
				Name:      "payments", // from the workload
				Workload:  workload.Workload{Kind: workload.Deployment, Name: "payments"},
				Port:      Port{Remote: 7000, Local: 7000},
				Header:    map[string]string{"x-dev": "me", "x-team": "pay"},
				Path:      "/api/",
				PathRegex: "^/v[0-9]+/orders",
				Method:    []string{"GET", "POST"},
				Match:     "any",
			},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Parse got\n%+v\nwant\n%+v", got, want)
	}
}

func TestParseDefaultsAndShortcuts(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want *Config
	}{
		{"empty file", "", Default()},
		{"comments only", "# nothing yet\n", Default()},
		{"empty document", "---\n", Default()},
		{"empty sections keep defaults", "claim:\nintercepts:\ncontext:\n", Default()},
		{"claim pool only keeps default duration", "claim: {pool: team-a}\n",
			&Config{Claim: Claim{Pool: "team-a", For: DefaultClaimFor}}},
		{"kubectl kind spellings", "intercepts:\n  - {name: a, workload: deploy/a}\n  - {name: b, workload: sts/b}\n" +
			"  - {name: c, workload: deployments.apps/c}\n  - {name: d, workload: StatefulSet.v1.apps/d}\n",
			&Config{Claim: Default().Claim, Intercepts: []Intercept{
				{Name: "a", Workload: workload.Workload{Kind: workload.Deployment, Name: "a"}},
				{Name: "b", Workload: workload.Workload{Kind: workload.StatefulSet, Name: "b"}},
				{Name: "c", Workload: workload.Workload{Kind: workload.Deployment, Name: "c"}},
				{Name: "d", Workload: workload.Workload{Kind: workload.StatefulSet, Name: "d"}},
			}}},
		{"merge keys share settings", `intercepts:
  - &orders
    workload: orders
    env: {A: "1"}
  - <<: *orders
    name: orders-2
`, &Config{Claim: Default().Claim, Intercepts: []Intercept{
			{Name: "orders", Workload: workload.Workload{Kind: workload.Deployment, Name: "orders"}, Env: map[string]string{"A": "1"}},
			{Name: "orders-2", Workload: workload.Workload{Kind: workload.Deployment, Name: "orders"}, Env: map[string]string{"A": "1"}},
		}}},
		{"scalars in lists and maps read as text", "intercepts:\n  - workload: a\n    args: [-n, 3, true, 1.50]\n    env: {DEBUG: true}\n",
			&Config{Claim: Default().Claim, Intercepts: []Intercept{{
				Name: "a", Workload: workload.Workload{Kind: workload.Deployment, Name: "a"},
				Args: []string{"-n", "3", "true", "1.50"}, Env: map[string]string{"DEBUG": "true"},
			}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse("x.yaml", []byte(tt.src))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string // Error.Error() of each, in order
	}{
		// unknown keys
		{"unknown top-level key suggests", "intercept:\n  - workload: x\n",
			[]string{`1:1: intercept: unknown field "intercept"; did you mean "intercepts"?`}},
		{"unknown key with swapped letters suggests", "intercepts:\n  - workload: x\n    prot: 80\n",
			[]string{`3:5: intercepts[0].prot: unknown field "prot"; did you mean "port"?`}},
		{"unknown key differing in case suggests", "intercepts:\n  - workload: x\n    buildflags: [-race]\n",
			[]string{`3:5: intercepts[0].buildflags: unknown field "buildflags"; did you mean "buildFlags"?`}},
		{"replayOnSave as a string", "intercepts:\n  - workload: x\n    replayOnSave: yes\n",
			[]string{`3:19: intercepts[0].replayOnSave: must be true or false, not a string`}},
		{"replayOnSave as a list", "intercepts:\n  - workload: x\n    replayOnSave: [true]\n",
			[]string{`3:19: intercepts[0].replayOnSave: must be true or false, not a list`}},
		{"unknown key far from all lists them", "claim:\n  size: 3\n",
			[]string{`2:3: claim.size: unknown field "size"; known fields here: pool, for`}},
		{"key set twice", "claim:\n  pool: a\n  pool: b\n",
			[]string{`3:3: claim.pool: "pool" is set twice (first at line 2); keep one`}},
		// types
		{"mapping expected", "claim: [dev]\n",
			[]string{`1:8: claim: must be a mapping (key: value lines), not a list`}},
		{"string expected", "context: 12\n",
			[]string{`1:10: context: must be a string, not a number; quote it: "12"`}},
		{"list expected, intercepts keyed by name", "intercepts:\n  orders:\n    workload: orders\n",
			[]string{`2:3: intercepts: must be a list (lines starting with "- ", or [a, b]), not a mapping`}},
		{"map expected", "intercepts:\n  - workload: a\n    env: [A=1]\n",
			[]string{`3:10: intercepts[0].env: must be a mapping (NAME: VALUE), not a list`}},
		{"null list item", "intercepts:\n  - workload: a\n    args: [a, ~]\n",
			[]string{`3:15: intercepts[0].args[1]: must be a string, not null; write "" for an empty string`}},
		{"null intercept", "intercepts:\n  -\n  - workload: a\n",
			[]string{`2:4: intercepts[0]: must be a mapping, not null`}},
		{"merge of a scalar", "claim:\n  <<: 1\n",
			[]string{`2:7: claim: << merges a mapping or a list of mappings, not a number`}},
		{"positions with CRLF line ends", "claim:\r\n  for: 0s\r\n  poll: a\r\n",
			[]string{
				`2:8: claim.for: claim duration 0s must be more than 0`,
				`3:3: claim.poll: unknown field "poll"; did you mean "pool"?`,
			}},
		{"columns count characters, not bytes", "intercepts: [{workload: a, env: {Ä: ü}, prot: 1}]\n",
			[]string{`1:41: intercepts[0].prot: unknown field "prot"; did you mean "port"?`}},
		{"file is a list", "- a\n",
			[]string{`1:1: the file must be a mapping of settings (claim, kubeconfig, context, agentImage, intercepts), not a list`}},
		{"key is not a name", "claim:\n  ? [a]\n  : b\n",
			[]string{`2:5: claim: keys must be names, not a list`}},
		// required
		{"workload missing", "intercepts:\n  - name: a\n    program: ./a\n",
			[]string{`2:5: intercepts[0].workload: workload is required`}},
		{"workload null", "intercepts:\n  - name: a\n    workload:\n",
			[]string{`3:5: intercepts[0].workload: workload is required`}},
		{"run without command", "intercepts:\n  - workload: a\n    run: {}\n",
			[]string{`3:10: intercepts[0].run.command: command is required`}},
		// durations
		{"duration without unit", "claim:\n  for: 8\n",
			[]string{`2:8: claim.for: 8 needs a unit: write 8h for hours or 8m for minutes`}},
		{"duration unreadable", "claim:\n  for: 8 hours\n",
			[]string{`2:8: claim.for: "8 hours" is not a duration: write one such as 8h, 90m or 1h30m`}},
		{"duration zero", "claim:\n  for: 0s\n",
			[]string{`2:8: claim.for: claim duration 0s must be more than 0`}},
		{"duration negative", "claim:\n  for: -1h\n",
			[]string{`2:8: claim.for: claim duration -1h0m0s must be more than 0`}},
		{"duration over a week", "claim:\n  for: 169h\n",
			[]string{`2:8: claim.for: claim duration 169h0m0s is longer than the maximum of 168h (7 days)`}},
		{"agent image with upper case", "agentImage: Registry.example.com/Kloop/agent:v1\n",
			[]string{`1:13: agentImage: agentImage "Registry.example.com/Kloop/agent:v1" is not an image reference: write REGISTRY/PATH:TAG or REGISTRY/PATH@sha256:DIGEST with a lower-case path, e.g. registry.example.com/kloop/agent:v1.2.3`}},
		{"agent image with a scheme", "agentImage: https://ghcr.io/kloop/agent:v1\n",
			[]string{`1:13: agentImage: agentImage "https://ghcr.io/kloop/agent:v1" is not an image reference: write REGISTRY/PATH:TAG or REGISTRY/PATH@sha256:DIGEST with a lower-case path, e.g. registry.example.com/kloop/agent:v1.2.3`}},
		{"pause hold zero", "intercepts:\n- workload: orders\n  pauseHold: 0s\n",
			[]string{`3:14: intercepts[0].pauseHold: pauseHold 0s must be more than 0; leave it out for the default of 2s`}},
		{"unknown traffic mode", "intercepts:\n- workload: orders\n  traffic: mirorr\n",
			[]string{`3:12: intercepts[0].traffic: traffic "mirorr" is not one of steal, mirror, none; leave it out for steal`}},
		{"traffic none with a personal rule", "intercepts:\n- workload: orders\n  traffic: none\n  header: {x-dev: me}\n  method: [GET]\n",
			[]string{
				`4:3: intercepts[0].header: header applies to the traffic an intercept receives, and traffic none receives none: remove header, or use traffic steal`,
				`5:3: intercepts[0].method: method applies to the traffic an intercept receives, and traffic none receives none: remove method, or use traffic steal`,
			}},
		{"traffic none with replay on save", "intercepts:\n- workload: orders\n  traffic: none\n  replayOnSave: true\n",
			[]string{`4:3: intercepts[0].replayOnSave: replayOnSave applies to the traffic an intercept receives, and traffic none receives none: remove replayOnSave, or use traffic steal`}},
		{"pause hold over 30s", "intercepts:\n- workload: orders\n  pauseHold: 1m\n",
			[]string{`3:14: intercepts[0].pauseHold: pauseHold 1m0s is longer than the maximum of 30s: callers would time out before the pods answer`}},
		{"outbound rules with a bad port and a bad CIDR", "intercepts:\n- workload: orders\n  outbound:\n    include: [users, \"users:http\"]\n    exclude:\n    - 10.0.0.0/33\n",
			[]string{
				`4:22: intercepts[0].outbound.include[1]: outbound rule "users:http": port "http" must be a number from 1 to 65535`,
				`6:7: intercepts[0].outbound.exclude[0]: outbound rule "10.0.0.0/33": "10.0.0.0/33" is not a CIDR such as 10.0.0.0/8 or fd00::/8`,
			}},
		{"outbound as a list", "intercepts:\n- workload: orders\n  outbound: [users]\n",
			[]string{`3:13: intercepts[0].outbound: must be a mapping (key: value lines), not a list`}},
		{"pool name", "claim:\n  pool: Team_A\n",
			[]string{`2:9: claim.pool: pool "Team_A" is not a pool name: use lowercase letters, digits, '-' and '.', starting and ending with a letter or digit`}},
		// ports
		{"port zero", "intercepts:\n  - workload: a\n    port: 0\n",
			[]string{`3:11: intercepts[0].port: port "0": 0 is out of range 1..65535; write REMOTE or REMOTE:LOCAL, such as 8080 or 8080:3000`}},
		{"port too large", "intercepts:\n  - workload: a\n    port: \"8080:70000\"\n",
			[]string{`3:11: intercepts[0].port: port "8080:70000": 70000 is out of range 1..65535; write REMOTE or REMOTE:LOCAL, such as 8080 or 8080:3000`}},
		{"port not a number", "intercepts:\n  - workload: a\n    port: http\n",
			[]string{`3:11: intercepts[0].port: port "http": "http" is not a port number; write REMOTE or REMOTE:LOCAL, such as 8080 or 8080:3000`}},
		{"port local missing", "intercepts:\n  - workload: a\n    port: '8080:'\n",
			[]string{`3:11: intercepts[0].port: port "8080:": port number is empty; write REMOTE or REMOTE:LOCAL, such as 8080 or 8080:3000`}},
		{"port is a float", "intercepts:\n  - workload: a\n    port: 80.5\n",
			[]string{`3:11: intercepts[0].port: must be a port number or a "REMOTE:LOCAL" string, not a number`}},
		{"port is a list", "intercepts:\n  - workload: a\n    port: [80]\n",
			[]string{`3:11: intercepts[0].port: must be a port number or a "REMOTE:LOCAL" string, not a list`}},
		// workloads
		{"workload kind", "intercepts:\n  - workload: foo/bar\n",
			[]string{`2:15: intercepts[0].workload: workload "foo/bar": kind must be deployment or statefulset`}},
		{"workload short kind capitalized", "intercepts:\n  - workload: STS/db\n",
			[]string{`2:15: intercepts[0].workload: workload "STS/db": kind must be lowercase: statefulset/db`}},
		{"workload group", "intercepts:\n  - workload: deployments.extensions/db\n",
			[]string{`2:15: intercepts[0].workload: workload "deployments.extensions/db": ".extensions" is not the API group of deployments: write deployment/db, deployment.apps/db or deployment.v1.apps/db`}},
		{"workload name", "intercepts:\n  - workload: deployment/Orders\n",
			[]string{`2:15: intercepts[0].workload: workload "deployment/Orders": name "Orders" is not a Kubernetes object name: use lowercase letters, digits, '-' and '.', starting and ending with a letter or digit`}},
		{"workload name empty", "intercepts:\n  - workload: deployment/\n",
			[]string{`2:15: intercepts[0].workload: workload "deployment/": name is empty`}},
		{"workload not a string", "intercepts:\n  - workload: {deployment: a}\n",
			[]string{`2:15: intercepts[0].workload: must be a string such as deployment/orders, not a mapping`}},
		// intercept rules
		{"program and run", "intercepts:\n  - workload: a\n    program: ./cmd/a\n    run: {command: [./a]}\n",
			[]string{`4:5: intercepts[0].run: program and run cannot both be set: program is a Go main package that kloop builds and debugs; run.command starts any other program`}},
		{"build without run", "intercepts:\n  - workload: a\n    program: ./cmd/a\n    build: {command: [make]}\n",
			[]string{`4:5: intercepts[0].build: build needs run: build.command builds what run.command starts, while kloop builds a Go program itself (use buildFlags for go build flags)`}},
		{"buildFlags with run", "intercepts:\n  - workload: a\n    run: {command: [./a]}\n    buildFlags: [-race]\n",
			[]string{`4:5: intercepts[0].buildFlags: buildFlags apply to go build of program; with run, put the build in build.command`}},
		{"duplicate names", "intercepts:\n  - name: a\n    workload: x\n  - name: a\n    workload: y\n",
			[]string{`4:11: intercepts[1].name: intercept name "a" is already used by the intercept at line 2; give each intercept its own name`}},
		{"duplicate names from workloads", "intercepts:\n  - workload: orders\n  - workload: statefulset/orders\n",
			[]string{`3:15: intercepts[1].workload: intercept name "orders" (taken from the workload) is already used by the intercept at line 2; add name: to tell them apart`}},
		{"empty name", "intercepts:\n  - name: ''\n    workload: x\n",
			[]string{`2:11: intercepts[0].name: name is empty; leave name out to name the intercept after its workload`}},
		{"bad name", "intercepts:\n  - name: my orders\n    workload: x\n",
			[]string{`2:11: intercepts[0].name: name "my orders": use letters, digits, '-', '_' and '.', starting and ending with a letter or digit`}},
		{"header name", "intercepts:\n  - workload: a\n    header: {x dev: me}\n",
			[]string{`3:14: intercepts[0].header.x dev: header name "x dev" is not a valid HTTP header name (no spaces, colons or quotes)`}},
		{"header value", "intercepts:\n  - workload: a\n    header: {x-dev: \"me\\r\\nx: y\"}\n",
			[]string{`3:21: intercepts[0].header.x-dev: header x-dev: the value contains a control character or line break`}},
		{"env name", "intercepts:\n  - workload: a\n    env: {A=B: c}\n",
			[]string{`3:11: intercepts[0].env.A=B: environment variable name "A=B" must not be empty or contain '='`}},
		{"readiness path", "intercepts:\n  - workload: a\n    readiness: {httpPath: healthz}\n",
			[]string{`3:27: intercepts[0].readiness.httpPath: httpPath "healthz" must start with '/', such as /healthz`}},
		{"empty command", "intercepts:\n  - workload: a\n    run: {command: []}\n",
			[]string{`3:20: intercepts[0].run.command: command is empty: give the program and its arguments, such as ["./gradlew", "installDist"]`}},
		{"empty program name in command", "intercepts:\n  - workload: a\n    run:\n      command: ['', x]\n",
			[]string{`4:17: intercepts[0].run.command[0]: the program name (the first item of command) is empty`}},
		{"watch glob", "intercepts:\n  - workload: a\n    watch: ['src/[a-']\n",
			[]string{`3:13: intercepts[0].watch[0]: watch pattern "src/[a-" is not a valid glob (check its [ ] brackets and \ escapes)`}},
		{"path regex", "intercepts:\n  - workload: a\n    pathRegex: '^/v[0-9+/orders'\n",
			[]string{`3:16: intercepts[0].pathRegex: path regex "^/v[0-9+/orders" at offset 3: missing closing ]: "[0-9+/orders"`}},
		{"path prefix", "intercepts:\n  - workload: a\n    path: api/\n",
			[]string{`3:11: intercepts[0].path: path "api/" must start with /, such as /api/`}},
		{"method", "intercepts:\n  - workload: a\n    method: [GET, 'POST,GTE']\n",
			[]string{`3:19: intercepts[0].method[1]: method "GTE" (item 2 of "POST,GTE") is not an HTTP method; use GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, TRACE, CONNECT`}},
		{"match", "intercepts:\n  - workload: a\n    path: /api/\n    match: either\n",
			[]string{`4:12: intercepts[0].match: match "either" is not all or any: all takes a request that meets every condition (the default), any one that meets at least one`}},
		{"match without a condition", "intercepts:\n  - workload: a\n    match: any\n",
			[]string{`3:5: intercepts[0].match: match combines the conditions of header, path, pathRegex and method, and this intercept has none: add one, or leave match out for a global intercept`}},
		// YAML itself
		// yaml.v3 reports the line of the block the error is in (the mapping
		// "pool: dev" opens), not of the bad line, and no column.
		{"syntax error", "claim:\n  pool: dev\n for: 8h\n",
			[]string{`2:1: YAML syntax: did not find expected key`}},
		{"tab indentation", "claim:\n\tpool: dev\n",
			[]string{`2:1: YAML syntax: found character that cannot start any token`}},
		{"two documents", "claim: {pool: a}\n---\nclaim: {pool: b}\n",
			[]string{`3:1: the file holds more than one YAML document; remove the '---' line before this one`}},
		{"alias to itself", "claim: &c {pool: a, <<: *c}\n",
			[]string{`1:25: claim: alias *c refers to the value that contains it`}},
		// everything at once, in file order
		{"all errors reported", "contxt: x\nclaim:\n  for: 1w\nintercepts:\n  - name: a\n    port: 0\n  - name: a\n    workload: x/y\n",
			[]string{
				`1:1: contxt: unknown field "contxt"; did you mean "context"?`,
				`3:8: claim.for: "1w" is not a duration: write one such as 8h, 90m or 1h30m`,
				`5:5: intercepts[0].workload: workload is required`,
				`6:11: intercepts[0].port: port "0": 0 is out of range 1..65535; write REMOTE or REMOTE:LOCAL, such as 8080 or 8080:3000`,
				`7:11: intercepts[1].name: intercept name "a" is already used by the intercept at line 5; give each intercept its own name`,
				`8:15: intercepts[1].workload: workload "x/y": kind must be deployment or statefulset`,
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse("x.yaml", []byte(tt.src))
			if err == nil {
				t.Fatalf("Parse accepted it: %+v", cfg)
			}
			if cfg != nil {
				t.Errorf("Parse returned a config with its error: %+v", cfg)
			}
			var errs *Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error is %T, want *Errors: %v", err, err)
			}
			if errs.Filename != "x.yaml" {
				t.Errorf("Filename = %q, want x.yaml", errs.Filename)
			}
			var got []string
			for _, e := range errs.List {
				got = append(got, e.Error())
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestErrorsMessageNamesFile(t *testing.T) {
	_, err := Parse("/ws/.kloop.yaml", []byte("contxt: a\nclaim: {for: 0s}\n"))
	want := "/ws/.kloop.yaml:1:1: contxt: unknown field \"contxt\"; did you mean \"context\"?\n" +
		"/ws/.kloop.yaml:2:14: claim.for: claim duration 0s must be more than 0"
	if err == nil || err.Error() != want {
		t.Errorf("error text:\n%v\nwant:\n%s", err, want)
	}
}

func TestTooManyErrorsAreCapped(t *testing.T) {
	var b strings.Builder
	for i := range 150 {
		b.WriteString("unknown" + strings.Repeat("x", i) + ": 1\n")
	}
	_, err := Parse("x.yaml", []byte(b.String()))
	var errs *Errors
	if !errors.As(err, &errs) {
		t.Fatalf("want *Errors, got %v", err)
	}
	if len(errs.List) != maxErrors {
		t.Errorf("got %d errors, want %d", len(errs.List), maxErrors)
	}
	if last := errs.List[len(errs.List)-1]; !strings.Contains(last.Message, "too many errors") {
		t.Errorf("last error = %v, want a too-many-errors note", last)
	}
}

func TestAliasExpansionIsBounded(t *testing.T) {
	// Each anchor merges the one before ten times: 10^9 pairs if expanded.
	// The anchors sit under an unknown key, which is reported but not read.
	var b strings.Builder
	b.WriteString("x-anchors:\n  a0: &a0 {x: 1}\n")
	for i := 1; i <= 9; i++ {
		prev := fmt.Sprintf("*a%d", i-1)
		fmt.Fprintf(&b, "  a%d: &a%d {<<: [%s]}\n", i, i, strings.TrimSuffix(strings.Repeat(prev+", ", 10), ", "))
	}
	b.WriteString("claim:\n  <<: *a9\n")
	_, err := Parse("x.yaml", []byte(b.String()))
	if err == nil || !strings.Contains(err.Error(), "expand too much") {
		t.Errorf("want an expansion error, got %v", err)
	}
}
