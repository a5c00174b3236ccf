package config

import (
	"fmt"
	"path"
	"regexp"
	"strconv"
	"strings"

	"github.com/kloop/kloop/agent/tunnel"
	"github.com/kloop/kloop/kube/outbound"
	"github.com/kloop/kloop/kube/workload"
)

// Patterns shared with the JSON Schema through the struct tags, so that the
// editor and the parser accept the same values.
var (
	poolNameRE      = regexp.MustCompile(tagOf(Claim{}, "Pool", "pattern"))
	interceptNameRE = regexp.MustCompile(tagOf(Intercept{}, "Name", "pattern"))
	headerNameRE    = regexp.MustCompile(tagOf(Intercept{}, "Header", "keyPattern"))
	headerValueRE   = regexp.MustCompile(tagOf(Intercept{}, "Header", "valuePattern"))
	agentImageRE    = regexp.MustCompile(tagOf(Config{}, "AgentImage", "pattern"))
)

func (c *Config) validate(r reporter) {
	if c.AgentImage != "" && !agentImageRE.MatchString(c.AgentImage) {
		r.atValue("agentImage", fmt.Sprintf("agentImage %q is not an image reference: write REGISTRY/PATH:TAG or REGISTRY/PATH@sha256:DIGEST with a lower-case path, e.g. registry.example.com/kloop/agent:v1.2.3", c.AgentImage))
	}
	firstAt := map[string]int{} // intercept name -> index
	for i := range c.Intercepts {
		ic := &c.Intercepts[i]
		item := "intercepts[" + strconv.Itoa(i) + "]"
		explicit := ic.Name != ""
		if !explicit {
			ic.Name = ic.Workload.Name
		}
		if ic.Name == "" {
			continue // the missing workload is already reported
		}
		first, dup := firstAt[ic.Name]
		if !dup {
			firstAt[ic.Name] = i
			continue
		}
		firstLine := r.line("intercepts[" + strconv.Itoa(first) + "]")
		if explicit {
			r.atValue(item+".name", fmt.Sprintf("intercept name %q is already used by the intercept at line %d; give each intercept its own name", ic.Name, firstLine))
		} else {
			r.atValue(item+".workload", fmt.Sprintf("intercept name %q (taken from the workload) is already used by the intercept at line %d; add name: to tell them apart", ic.Name, firstLine))
		}
	}
}

func (c *Claim) validate(r reporter) {
	if c.Pool != "" && (!poolNameRE.MatchString(c.Pool) || len(c.Pool) > workload.MaxNameLen) {
		r.atValue("pool", fmt.Sprintf("pool %q is not a pool name: use lowercase letters, digits, '-' and '.', starting and ending with a letter or digit", c.Pool))
	}
	switch {
	case c.For <= 0:
		r.atValue("for", fmt.Sprintf("claim duration %s must be more than 0", c.For))
	case c.For > MaxClaimFor:
		r.atValue("for", fmt.Sprintf("claim duration %s is longer than the maximum of 168h (7 days)", c.For))
	}
}

func (ic *Intercept) validate(r reporter) {
	if ic.Name == "" && r.written("name") {
		r.atValue("name", "name is empty; leave name out to name the intercept after its workload")
	}
	if ic.Name != "" && !interceptNameRE.MatchString(ic.Name) {
		r.atValue("name", fmt.Sprintf("name %q: use letters, digits, '-', '_' and '.', starting and ending with a letter or digit", ic.Name))
	}
	if ic.Program != "" && ic.Run != nil {
		r.atKey("run", "program and run cannot both be set: program is a Go main package that kloop builds and debugs; run.command starts any other program")
	}
	if ic.Build != nil && ic.Run == nil {
		r.atKey("build", "build needs run: build.command builds what run.command starts, while kloop builds a Go program itself (use buildFlags for go build flags)")
	}
	if len(ic.BuildFlags) > 0 && ic.Run != nil {
		r.atKey("buildFlags", "buildFlags apply to go build of program; with run, put the build in build.command")
	}
	for name, value := range ic.Header {
		if !headerNameRE.MatchString(name) {
			r.atKey("header."+name, fmt.Sprintf("header name %q is not a valid HTTP header name (no spaces, colons or quotes)", name))
		}
		if !headerValueRE.MatchString(value) {
			r.atValue("header."+name, fmt.Sprintf("header %s: the value contains a control character or line break", name))
		}
	}
	if ic.Path != "" {
		if err := tunnel.CheckPathPrefix(ic.Path); err != nil {
			r.atValue("path", err.Error())
		}
	} else if r.written("path") {
		r.atValue("path", "path is empty; leave it out to match every path, or give a prefix such as /api/")
	}
	if ic.PathRegex != "" || r.written("pathRegex") {
		if _, err := tunnel.CompilePathRegex(ic.PathRegex); err != nil {
			r.atValue("pathRegex", err.Error())
		}
	}
	for i, m := range ic.Method {
		if _, err := tunnel.ParseMethods(m); err != nil {
			r.atValue("method["+strconv.Itoa(i)+"]", err.Error())
		}
	}
	if _, err := tunnel.ParseMatch(ic.Match); err != nil {
		r.atValue("match", err.Error())
	} else if ic.Match != "" && len(ic.Header) == 0 && ic.Path == "" && ic.PathRegex == "" && len(ic.Method) == 0 {
		r.atKey("match", "match combines the conditions of header, path, pathRegex and method, and this intercept has none: add one, or leave match out for a global intercept")
	}
	for name := range ic.Env {
		if name == "" || strings.Contains(name, "=") {
			r.atKey("env."+name, fmt.Sprintf("environment variable name %q must not be empty or contain '='", name))
		}
	}
	switch {
	case ic.PauseHold < 0 || (ic.PauseHold == 0 && r.written("pauseHold")):
		r.atValue("pauseHold", fmt.Sprintf("pauseHold %s must be more than 0; leave it out for the default of %s", ic.PauseHold, DefaultPauseHold))
	case ic.PauseHold > MaxPauseHold:
		r.atValue("pauseHold", fmt.Sprintf("pauseHold %s is longer than the maximum of %s: callers would time out before the pods answer", ic.PauseHold, MaxPauseHold))
	}
	if err := CheckTraffic(ic.Traffic); err != nil {
		r.atValue("traffic", err.Error())
	} else if ic.Traffic == "none" {
		for _, key := range []string{"header", "path", "pathRegex", "method", "match", "pauseHold", "replayOnSave"} {
			if r.written(key) {
				r.atKey(key, NoTrafficConflict(key))
			}
		}
	}
	for i, pattern := range ic.Watch {
		if _, err := path.Match(pattern, ""); err != nil {
			r.atValue("watch["+strconv.Itoa(i)+"]", fmt.Sprintf("watch pattern %q is not a valid glob (check its [ ] brackets and \\ escapes)", pattern))
		}
	}
}

func (o *Outbound) validate(r reporter) {
	for _, list := range []struct {
		field string
		rules []string
	}{{"include", o.Include}, {"exclude", o.Exclude}} {
		for i, rule := range list.rules {
			if _, err := outbound.ParseRule(rule); err != nil {
				r.atValue(list.field+"["+strconv.Itoa(i)+"]", err.Error())
			}
		}
	}
}

func (rd *Readiness) validate(r reporter) {
	if rd.HTTPPath != "" && !strings.HasPrefix(rd.HTTPPath, "/") {
		r.atValue("httpPath", fmt.Sprintf("httpPath %q must start with '/', such as /healthz", rd.HTTPPath))
	}
}

func (c *Command) validate(r reporter) {
	switch {
	case c.Command == nil:
		// missing: reported as required
	case len(c.Command) == 0:
		r.atValue("command", "command is empty: give the program and its arguments, such as [\"./gradlew\", \"installDist\"]")
	case c.Command[0] == "":
		r.atValue("command[0]", "the program name (the first item of command) is empty")
	}
}
