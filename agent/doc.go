// Package agent is kloop's in-cluster traffic agent (`kloop agent`), the
// sidecar that kube/intercept injects into an intercepted workload's pods.
//
// For each intercepted container port the agent listens on a port of its own,
// which the Service's targetPort is pointed at, and forwards to the app
// container's original port. A kloop daemon connected through the tunnel
// (package agent/tunnel) can route that traffic to the developer's laptop:
//
//   - global intercept: every connection goes to the laptop, spliced byte for
//     byte (HTTP of any version, WebSocket, gRPC, or any TCP protocol);
//     connections that were already open on an HTTP port go to the laptop
//     request by request;
//   - personal intercept (header NAME=VALUE): each HTTP request is routed on
//     its own, HTTP/1.1 keep-alive and h2c (prior knowledge and Upgrade)
//     alike; requests without the header go to the app. tcp ports stay on the
//     app;
//   - mirror (global or with a rule): the app answers every request; once
//     its answer's head is in, a copy of each request the rule takes goes
//     to the laptop as HTTP/1.1, marked Kloop-Mirror: STATUS, and the
//     laptop's answer is discarded. Copies wait in a bounded queue per
//     holder and are dropped (and counted) when it is full, so a slow
//     laptop never delays a caller. A mirror takes no request, so its rule
//     overlaps any other; it copies the requests the app answers.
//
// Whenever the intercept changes or ends, the connections spliced to the
// laptop are closed, so clients with long-lived keep-alive connections (an
// ingress controller) reconnect and are routed afresh.
//
// Several developers share one agent: each holder's daemon has its own
// tunnel and sets its own rule. At most one global rule per port, which then
// excludes every other holder's rule on it, or any number of personal rules
// whose headers differ; a rule that would take another holder's requests is
// refused with their name. Requests no rule takes go to the app.
//
// A rule is set at runtime by its holder's client over the tunnel and
// lives exactly as long as that tunnel, so changing it needs no rollout, and
// when the laptop goes away (tunnel closed, or keep-alives unanswered for
// about 5 s) everything goes to the app again. A request the laptop cannot
// take (its local process is down) is answered by the app; an idempotent
// request caught by a dying tunnel is repeated to the app. The agent never
// black-holes traffic.
//
// While a holder's process is paused (its client says so: the debugger
// stopped it at a breakpoint), the requests already on the laptop wait
// there, and under a global intercept each new request waits up to a hold
// (2 s unless the client asks otherwise) and then goes to the app: new
// connections are routed request by request meanwhile, and connections
// spliced to the laptop that are idle are taken back to the router. A
// personal intercept's matching requests keep going to the laptop. Kubelet
// probes (User-Agent kube-probe/) go to the app under every intercept, and
// a connection that sends nothing (a TCP probe) never reaches the laptop.
//
// Stats count, per port, HTTP requests the router sent each way plus whole
// connections routed under a global intercept (one each): what went to the
// asking holder's laptop, and what the app answered for everyone.
//
// Apart from globally intercepted connections, HTTP/1.x requests on HTTP
// ports take a fast path: the request head goes upstream byte for byte,
// then the body, on a connection to the chosen side that belongs to the
// client's connection, and the response comes back with its framing kept or
// re-written where a stream needs it. A connection that speaks h2c, upgrades
// (WebSocket, h2c), sends Expect or a chunked request body, or has a head
// over 16 KiB is served for the rest of its life by net/http and a reverse
// proxy instead, which keeps Host, headers and body, adds no
// X-Forwarded-For, handles hop-by-hop headers as RFC 9110 requires, sends
// HTTP/2 upstream as h2c and HTTP/1 as HTTP/1.1, and passes upgrades through.
//
// # Container spec
//
// The injected container runs `kloop agent` with:
//
//	--forward LISTEN_PORT=APP_HOST:APP_PORT[/http|/tcp]
//	    repeatable, one per intercepted container port, e.g.
//	    --forward 9080=127.0.0.1:8080 (the Service's targetPort becomes 9080)
//	    --forward 9432=127.0.0.1:5432/tcp. APP_HOST:APP_PORT may be a bare
//	    APP_PORT on 127.0.0.1. The protocol defaults to http; mark non-HTTP
//	    ports /tcp (they are passed through and can only be intercepted
//	    globally). APP_PORT is the number users and the tunnel name the port by.
//	--control 127.0.0.1:7650
//	    the tunnel listener; must be loopback, so only Kubernetes port-forward
//	    reaches it. Env KLOOP_AGENT_CONTROL.
//	--token-file PATH (env KLOOP_AGENT_TOKEN_FILE)
//	    file holding the per-intercept token, e.g. a Secret volume mounted at
//	    /var/run/kloop/token. Without it, env KLOOP_AGENT_TOKEN holds the
//	    token itself (a secretKeyRef). Surrounding whitespace is ignored. The
//	    token is never logged. The agent refuses to start without one.
//	--pod NAME (env POD_NAME, from the downward API metadata.name)
//	    reported to clients so they can tell replicas apart.
//
// --forward may also come from env KLOOP_AGENT_FORWARD as a comma-separated
// list. Logs are JSON lines on stderr.
package agent
