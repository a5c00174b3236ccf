// Pure logic of the kloop extension: no `vscode` import, so it is unit-tested
// under node directly. The types mirror what `kloop lsp` sends.

/** The `kloop/status` notification and the `kloop.status` command result. */
export interface KloopStatus {
  workspace: string;
  claim?: {
    pool: string;
    slot: string;
    namespace?: string;
    holder: string;
    until: string;
    kubeconfig: string;
  };
  intercepts: Array<{
    workload: string;
    ports: string[];
    header?: Record<string, string>;
    requests: number;
    state: string;
  }> | null;
  process?: { program: string; pid: number; state: string };
  lastBuild?: { ok: boolean; millis: number; at: string; errors: number };
  lastRelaunchMillis?: number;
  updated: string;
}

/** The oldest kloop whose LSP/DAP surface this extension speaks. */
export const MIN_KLOOP_VERSION = '0.1.0';

export type VersionVerdict =
  | { ok: true; version: string; dev: boolean }
  | { ok: false; version?: string; message: string };

/**
 * checkVersion judges the output of `kloop version` ("kloop v0.2.0",
 * "kloop devel", "kloop v0.0.0-20260101000000-abcdef123456").
 */
export function checkVersion(output: string, binary: string, min = MIN_KLOOP_VERSION): VersionVerdict {
  const m = /^kloop\s+(\S+)\s*$/m.exec(output.trim());
  if (!m) {
    return {
      ok: false,
      message: `${binary} does not look like kloop: \`${binary} version\` printed ${JSON.stringify(output.trim().slice(0, 80))}. Set "kloop.path" to the kloop binary.`,
    };
  }
  const version = m[1];
  if (version === 'devel') {
    return { ok: true, version, dev: true };
  }
  const sv = /^v?(\d+)\.(\d+)\.(\d+)(-[0-9A-Za-z.-]+)?(\+\S+)?$/.exec(version);
  if (!sv) {
    return { ok: false, version, message: `kloop at ${binary} reports an unreadable version ${JSON.stringify(version)}; this extension needs kloop ${min} or later.` };
  }
  // A Go pseudo-version (v0.0.0-yyyymmddhhmmss-abcdef) is a build from source.
  if (sv[4] && /^-(0\.)?\d{14}-[0-9a-f]{12}$/.test(sv[4])) {
    return { ok: true, version, dev: true };
  }
  const have = [Number(sv[1]), Number(sv[2]), Number(sv[3])];
  const want = min.split('.').map(Number);
  for (let i = 0; i < 3; i++) {
    if (have[i] > want[i]) break;
    if (have[i] < want[i]) {
      return {
        ok: false,
        version,
        message: `kloop ${version} at ${binary} is too old: this extension needs kloop ${min} or later. Update kloop (go install github.com/kloop/kloop/cmd/kloop@latest) or point "kloop.path" at a newer binary.`,
      };
    }
  }
  return { ok: true, version, dev: false };
}

/** installCommand is what "kloop: Install kloop" runs in a terminal. */
export const installCommand = 'go install github.com/kloop/kloop/cmd/kloop@latest';

/** missingBinaryMessage is what the user reads when kloop cannot be started. */
export function missingBinaryMessage(binary: string, err: NodeJS.ErrnoException): string {
  if (err.code === 'ENOENT') {
    return `kloop was not found (${binary}). Install it (${installCommand}) or set "kloop.path" to the binary.`;
  }
  if (err.code === 'EACCES') {
    return `kloop at ${binary} is not executable (permission denied). Check "kloop.path".`;
  }
  return `kloop at ${binary} could not run: ${err.message}. Check "kloop.path".`;
}

function duration(ms: number): string {
  if (ms < 1000) return `${ms}ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)}s`;
  return `${Math.round(ms / 60_000)}m`;
}

function until(iso: string, now: Date): string {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return iso;
  const left = t - now.getTime();
  if (left <= 0) return 'expired';
  const h = Math.floor(left / 3_600_000);
  const m = Math.floor((left % 3_600_000) / 60_000);
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m left` : `${m}m left`;
}

export interface StatusBarView {
  text: string;
  tooltip: string;
  /** 'error' when the last build failed, 'warning' while nothing is claimed. */
  severity: 'ok' | 'warning' | 'error';
}

/** formatStatus draws the status bar item from a kloop/status. */
export function formatStatus(st: KloopStatus | undefined, now = new Date()): StatusBarView {
  if (!st) {
    return { text: '$(sync~spin) kloop', tooltip: 'kloop: starting', severity: 'ok' };
  }
  const parts: string[] = [];
  const tip: string[] = [];
  if (st.claim) {
    const where = st.claim.namespace || st.claim.slot;
    parts.push(`$(cloud) ${where}`);
    tip.push(`Claimed ${where} from pool ${st.claim.pool} (${until(st.claim.until, now)})`);
  } else {
    parts.push('$(cloud) no claim');
    tip.push('No dev namespace claimed: click to claim one');
  }
  const intercepts = st.intercepts ?? [];
  for (const ic of intercepts) {
    const header = ic.header && Object.keys(ic.header).length
      ? ' ' + Object.entries(ic.header).map(([k, v]) => `${k}=${v}`).join(',')
      : '';
    parts.push(`$(arrow-swap) ${shortWorkload(ic.workload)} ${ic.requests} req`);
    tip.push(`Intercepting ${ic.workload}${header} (${ic.state}): ${ic.requests} requests served`);
  }
  if (st.process) {
    tip.push(`Process ${st.process.program} pid ${st.process.pid}: ${st.process.state}`);
  }
  let severity: StatusBarView['severity'] = st.claim ? 'ok' : 'warning';
  if (st.lastBuild && !st.lastBuild.ok) {
    severity = 'error';
    parts.push(`$(error) build failed`);
    tip.push(`Last build failed with ${st.lastBuild.errors} error(s); the previous process keeps serving`);
  } else if (st.lastRelaunchMillis) {
    parts.push(`$(debug-restart) ${duration(st.lastRelaunchMillis)}`);
    tip.push(`Last relaunch: ${duration(st.lastRelaunchMillis)} from save to serving`);
  }
  return { text: parts.join('  '), tooltip: tip.join('\n'), severity };
}

/** "deployment/orders" -> "orders"; statefulsets keep their kind. */
export function shortWorkload(w: string): string {
  return w.startsWith('deployment/') ? w.slice('deployment/'.length) : w;
}

export interface Action {
  label: string;
  description?: string;
  /** The palette command that performs it. */
  command: string;
}

/** actionsFor lists what the status bar's quick pick offers, most likely first. */
export function actionsFor(st: KloopStatus | undefined): Action[] {
  const acts: Action[] = [];
  const intercepts = st?.intercepts ?? [];
  if (!st?.claim) {
    acts.push({ label: '$(cloud-upload) Claim a dev namespace', command: 'kloop.claim.ui' });
  }
  acts.push({ label: '$(arrow-swap) Intercept a workload', command: 'kloop.intercept.ui' });
  if (intercepts.length > 0) {
    acts.push({ label: '$(debug-restart) Relaunch now', command: 'kloop.relaunch.ui' });
    acts.push({
      label: '$(debug-disconnect) Leave intercepts',
      description: intercepts.map((i) => i.workload).join(', '),
      command: 'kloop.leave.ui',
    });
  }
  acts.push({ label: '$(clippy) Copy workload env', command: 'kloop.env.ui' });
  acts.push({ label: '$(info) Show status', command: 'kloop.status.ui' });
  if (st?.claim) {
    acts.push({ label: '$(cloud-download) Release the dev namespace', description: st.claim.namespace || st.claim.slot, command: 'kloop.release.ui' });
  }
  acts.push({ label: '$(output) Show output', command: 'kloop.showOutput' });
  acts.push({ label: '$(refresh) Restart kloop', command: 'kloop.restart' });
  return acts;
}

// workloadRe is the daemon's own rule (kube/workload, via config/kloop.schema.json and
// the launch schema in package.json; a Go test keeps the three equal).
const workloadRe = new RegExp("^((([dD][eE][pP][lL][oO][yY][mM][eE][nN][tT]|[dD][eE][pP][lL][oO][yY][mM][eE][nN][tT][sS]|deploy|[sS][tT][aA][tT][eE][fF][uU][lL][sS][eE][tT]|[sS][tT][aA][tT][eE][fF][uU][lL][sS][eE][tT][sS]|sts)(\\.apps|\\.v1\\.apps)?)/)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$");

/** validateWorkload returns an error message for an input box, or undefined. */
export function validateWorkload(w: string): string | undefined {
  const v = w.trim();
  if (!v) return 'Name a workload, e.g. deployment/orders';
  if (workloadRe.test(v)) return undefined;
  if (v.includes('/') && !workloadRe.test('deployment/' + v.slice(v.indexOf('/') + 1))) {
    return `${v} is not a valid workload name: lower-case letters, digits, '-' and '.'`;
  }
  if (v.includes('/')) return 'The kind must be deployment or statefulset (or kubectl\'s deploy, sts, deployments.apps), e.g. deployment/orders';
  return `${v} is not a valid workload name: lower-case letters, digits, '-' and '.'`;
}

/** normalizeWorkload makes a bare name a deployment. */
export function normalizeWorkload(w: string): string {
  const v = w.trim();
  return v.includes('/') ? v : `deployment/${v}`;
}

/** An error as vscode-jsonrpc's ResponseError carries it. */
export interface RpcErrorLike {
  code?: number;
  message?: string;
}

/** Codes kloop answers with (handlers/command.go). */
export const CODE_NOT_AVAILABLE = -32001;
export const CODE_NO_WORKSPACE = -32003;

/**
 * describeCommandError turns a failed workspace/executeCommand into the
 * sentence the user reads.
 */
export function describeCommandError(_command: string, err: unknown): string {
  const e = (err ?? {}) as RpcErrorLike;
  let msg = (typeof e.message === 'string' && e.message) || String(err);
  msg = msg.replace(/^Request workspace\/executeCommand failed with message: /, '');
  if (!msg.startsWith('kloop')) msg = `kloop: ${msg}`;
  return msg;
}

export interface LaunchConfig {
  type?: string;
  request?: string;
  name?: string;
  workload?: string;
  program?: string;
  port?: string;
  header?: Record<string, string>;
  args?: string[];
  env?: Record<string, string>;
  buildFlags?: string[];
  [k: string]: unknown;
}

/**
 * resolveLaunch completes a `kloop` debug configuration before the adapter
 * starts: F5 without a launch.json, a Go main file in the editor, and checks
 * of the fields a user types by hand.
 */
export function resolveLaunch(
  cfg: LaunchConfig,
  ctx: { activeGoMain?: { program: string; workload: string } },
): { config: LaunchConfig } | { error: string } {
  const c: LaunchConfig = { ...cfg };
  if (!c.type && !c.request && !c.name) {
    if (!ctx.activeGoMain) {
      return { error: 'kloop: open the main.go of the service to debug, or add a "kloop" configuration to launch.json.' };
    }
    c.type = 'kloop';
    c.request = 'launch';
    c.program = ctx.activeGoMain.program;
    // A main package at the folder's root names no workload: debug it locally.
    if (ctx.activeGoMain.workload) {
      c.name = `kloop: intercept ${ctx.activeGoMain.workload}`;
      c.workload = ctx.activeGoMain.workload;
    } else {
      c.name = `kloop: debug ${c.program} locally`;
    }
  }
  // "workload": "" reads as "no cluster", as leaving it out does.
  if (c.workload === '') delete c.workload;
  if (c.request !== 'launch') {
    return { error: `kloop: request "${c.request}" is not supported; use "launch".` };
  }
  if (c.workload !== undefined) {
    if (typeof c.workload !== 'string') return { error: 'kloop: "workload" must be a string such as deployment/orders.' };
    const bad = validateWorkload(c.workload);
    if (bad) return { error: `kloop: "workload": ${bad}` };
  }
  if (!c.program && ctx.activeGoMain) c.program = ctx.activeGoMain.program;
  if (!c.program || typeof c.program !== 'string') {
    return { error: 'kloop: "program" is required: the Go main package to debug, e.g. ./cmd/orders.' };
  }
  if (c.port !== undefined) {
    const m = /^(\d{1,5})(?::(\d{1,5}))?$/.exec(String(c.port));
    if (!m || [m[1], m[2]].some((p) => p !== undefined && (Number(p) < 1 || Number(p) > 65535))) {
      return { error: `kloop: "port" ${JSON.stringify(c.port)} must be REMOTE[:LOCAL], ports 1-65535, e.g. "8080" or "8080:18080".` };
    }
    c.port = String(c.port);
  }
  return { config: c };
}

/** goMainOf finds the program and workload of a Go main file, if it is one. */
export function goMainOf(text: string, relDir: string): { program: string; workload: string } | undefined {
  if (!/^package\s+main\b/m.test(text) || !/^func\s+main\s*\(\s*\)/m.test(text)) return undefined;
  const dir = relDir.replace(/\\/g, '/').replace(/\/$/, '');
  const program = dir === '' || dir === '.' ? '.' : dir.startsWith('.') ? dir : `./${dir}`;
  const base = program === '.' ? '' : program.split('/').pop()!;
  return { program, workload: base ? `deployment/${base}` : '' };
}

/** An HTTP answer as kloop reports it (credentials masked). */
export interface Answer {
  status: number;
  header?: Record<string, string[]>;
  body?: string;
  bodyTruncated?: boolean;
}

/**
 * answerText renders an answer for the replay diff: the status, the headers
 * sorted (those that change by themselves left out, as kloop's comparison
 * does), and the body, indented when it is JSON so the diff is per field.
 */
export function answerText(a: Answer | undefined): string {
  if (!a) return '(no answer was recorded)\n';
  const skip = new Set(['date', 'content-length', 'connection', 'keep-alive', 'transfer-encoding', 'age', 'expires', 'last-modified', 'etag']);
  const lines = [`HTTP ${a.status}`];
  for (const name of Object.keys(a.header ?? {}).sort()) {
    if (skip.has(name.toLowerCase())) continue;
    for (const v of a.header![name]) lines.push(`${name}: ${v}`);
  }
  lines.push('');
  let body = a.body ?? '';
  try {
    if (body.trim() !== '') body = JSON.stringify(JSON.parse(body), sortedKeys, 2);
  } catch {
    // Not JSON: shown as it is.
  }
  lines.push(body.replace(/\n$/, ''));
  if (a.bodyTruncated) lines.push('… (only the first 64 KiB were kept)');
  return lines.join('\n') + '\n';
}

function sortedKeys(_key: string, v: unknown): unknown {
  if (v && typeof v === 'object' && !Array.isArray(v)) {
    return Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  }
  return v;
}

/** The scheme of the replay diff's read-only documents. */
export const replayScheme = 'kloop-replay';

/** replayPaths names the two documents of replay n of request id. */
export function replayPaths(id: number, n: number): { recorded: string; replayed: string } {
  return { recorded: `/${id}/${n}/recorded.http`, replayed: `/${id}/${n}/replayed.http` };
}

/**
 * replayViewFeature declares the experimental capability kloopReplayView:
 * this client shows a replay's answers itself (the diff editor), so kloop
 * sends it no window/showMessage summary.
 */
export const replayViewFeature = {
  fillClientCapabilities(caps: { experimental?: Record<string, unknown> }): void {
    caps.experimental = { ...(caps.experimental ?? {}), kloopReplayView: true };
  },
  getState: () => ({ kind: 'static' as const }),
  initialize(): void {},
  clear(): void {},
};

/**
 * initializationOptions are what the extension tells `kloop lsp` in
 * initialize: it turns the "& debug" lens and code action into a `kloop`
 * debug session (so kloop offers them; an editor that starts none gets
 * "& run" only), and its own version, which `kloop doctor` reports.
 */
export function initializationOptions(extensionVersion: string): { startsDebugSessions: true; extensionVersion: string } {
  return { startsDebugSessions: true, extensionVersion };
}

/** WorkloadInfo is one entry of kloop.workloads (session.WorkloadInfo). */
export interface WorkloadInfo {
  workload: string;
  kind: string;
  name: string;
  ready: number;
  replicas: number;
  ports: Array<{ container: string; port: number; name?: string; protocol: string }>;
  agent?: { resident?: boolean; holders: Array<{ name: string; rule?: string }>; error?: string };
}

/** WorkloadsResult is kloop.workloads' answer. */
export interface WorkloadsResult {
  namespace: string;
  workloads: WorkloadInfo[];
}

/** WorkloadItem is one row of the workload picker. */
export interface WorkloadItem {
  label: string;
  description?: string;
  detail?: string;
  /** workload is what the command gets; undefined for "type a name". */
  workload?: string;
}

/** typeWorkloadLabel is the picker's row for a workload it does not list. */
export const typeWorkloadLabel = '$(edit) Type a workload name…';

/**
 * workloadItems turns kloop.workloads into picker rows: replicas and ports
 * beside the name, and below it who intercepts it, so a user sees before
 * picking that a workload is taken or has a resident agent. The last row
 * lets them type a name the list does not have (made meanwhile, say).
 */
export function workloadItems(res: WorkloadsResult): WorkloadItem[] {
  const items: WorkloadItem[] = res.workloads.map((w) => {
    const ports = w.ports.map((p) => (p.name ? `${p.port} (${p.name})` : `${p.port}`)).join(', ');
    const item: WorkloadItem = {
      label: w.workload,
      description: `${w.ready}/${w.replicas} ready` + (ports ? ` · ports ${ports}` : ' · no ports'),
      workload: w.workload,
    };
    const agent = agentSummary(w.agent);
    if (agent) item.detail = agent;
    return item;
  });
  items.push({ label: typeWorkloadLabel, description: `not listed in namespace ${res.namespace}` });
  return items;
}

/** agentSummary says what kloop agent a workload has, or '' for none. */
export function agentSummary(a: WorkloadInfo['agent']): string {
  if (!a) return '';
  if (a.error) return `kloop agent with an unreadable record: ${a.error}`;
  const holders = a.holders.map((h) => `${h.name} (${h.rule ? h.rule : 'global'})`);
  const parts: string[] = [];
  if (a.resident) parts.push('resident kloop agent');
  if (holders.length > 0) parts.push(`intercepted by ${holders.join(', ')}`);
  return parts.length > 0 ? parts.join('; ') : 'kloop agent, dormant';
}

/** maxWorkloadConfigs caps the "debug PACKAGE on WORKLOAD" entries, so Run and Debug's list stays readable. */
export const maxWorkloadConfigs = 50;

/**
 * workloadConfigurations are the launch configurations that debug a main
 * package on a workload's cluster traffic: every package with every
 * workload, those whose names match first (cmd/orders with
 * deployment/orders), at most maxWorkloadConfigs.
 */
export function workloadConfigurations(programs: string[], workloads: string[]): LaunchConfig[] {
  const pairs: Array<{ program: string; workload: string; match: boolean }> = [];
  for (const program of programs) {
    const base = program.split('/').pop() ?? '';
    for (const workload of workloads) {
      pairs.push({ program, workload, match: base !== '' && base !== '.' && workload.slice(workload.indexOf('/') + 1) === base });
    }
  }
  pairs.sort((a, b) => Number(b.match) - Number(a.match));
  return pairs.slice(0, maxWorkloadConfigs).map(({ program, workload }) => ({
    type: 'kloop',
    request: 'launch',
    name: `kloop: debug ${program} on ${workload}`,
    program,
    workload,
  }));
}
