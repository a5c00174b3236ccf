// The controller owns what the user sees of kloop in VS Code besides the
// language features: the status bar item, the palette commands, and how a
// failed command reads. It talks to kloop through a small client interface
// so that unit tests drive it with a stub `vscode` and a fake client.
import * as vscode from 'vscode';
import {
  Answer,
  KloopStatus,
  actionsFor,
  answerText,
  replayPaths,
  replayScheme,
  describeCommandError,
  formatStatus,
  normalizeWorkload,
  validateWorkload,
  WorkloadsResult,
  workloadItems,
} from './logic';

/** The part of vscode-languageclient's LanguageClient the controller uses. */
export interface KloopClient {
  sendRequest(method: string, params: unknown): Promise<unknown>;
}

/**
 * ReplayDocuments serves the read-only documents of the replay diff
 * (kloop-replay:/ID/N/recorded.http and …/replayed.http) from memory: the
 * answers never touch the disk.
 */
export class ReplayDocuments implements vscode.TextDocumentContentProvider {
  readonly docs = new Map<string, string>();
  provideTextDocumentContent(uri: vscode.Uri): string {
    return this.docs.get(uri.path) ?? '';
  }
}

export class Controller implements vscode.Disposable {
  readonly statusBar: vscode.StatusBarItem;
  status: KloopStatus | undefined;
  readonly replayDocs = new ReplayDocuments();
  private replays = 0;
  private disposables: vscode.Disposable[] = [];

  constructor(
    private readonly client: KloopClient,
    readonly output: vscode.OutputChannel,
  ) {
    this.statusBar = vscode.window.createStatusBarItem('kloop.status', vscode.StatusBarAlignment.Left, 50);
    this.statusBar.name = 'kloop';
    this.statusBar.command = 'kloop.actions';
    this.onStatus(undefined);
    this.statusBar.show();
  }

  /**
   * register adds the palette commands. A command runs only when ready()
   * says so (kloop.showOutput always does), so without a kloop binary none
   * prompts for input it cannot use.
   */
  register(ready: () => boolean = () => true): vscode.Disposable[] {
    const cmds: Array<[string, () => Promise<unknown>]> = [
      ['kloop.claim.ui', () => this.claim()],
      ['kloop.release.ui', () => this.release()],
      ['kloop.intercept.ui', () => this.intercept()],
      ['kloop.leave.ui', () => this.leave()],
      ['kloop.status.ui', () => this.showStatus()],
      ['kloop.relaunch.ui', () => this.relaunch()],
      ['kloop.env.ui', () => this.copyEnv()],
      ['kloop.logs.ui', () => this.showLogs()],
      ['kloop.requests.ui', () => this.pickRequest()],
      ['kloop.replay.ui', () => this.replay()],
      ['kloop.doctor.ui', () => this.doctor()],
      ['kloop.export.ui', () => this.exportTest()],
      ['kloop.agent.install.ui', () => this.installAgent()],
      ['kloop.agent.uninstall.ui', () => this.uninstallAgent()],
      ['kloop.workloads.ui', () => this.workloads()],
      ['kloop.actions', () => this.actions()],
      ['kloop.showOutput', async () => this.output.show(true)],
    ];
    for (const [id, fn] of cmds) {
      const run = id === 'kloop.showOutput' ? fn : async () => (ready() ? fn() : undefined);
      this.disposables.push(vscode.commands.registerCommand(id, run));
    }
    this.disposables.push(vscode.workspace.registerTextDocumentContentProvider(replayScheme, this.replayDocs));
    return this.disposables;
  }

  /** onStatus redraws the status bar from a kloop/status notification. */
  onStatus(st: KloopStatus | undefined): void {
    this.status = st;
    const view = formatStatus(st);
    this.statusBar.text = view.text;
    this.statusBar.tooltip = view.tooltip + '\n\nClick for kloop actions';
    this.statusBar.backgroundColor =
      view.severity === 'error' ? new vscode.ThemeColor('statusBarItem.errorBackground')
        : view.severity === 'warning' ? new vscode.ThemeColor('statusBarItem.warningBackground')
          : undefined;
  }

  /** onProblem shows in the status bar that no kloop runs, and why. */
  onProblem(message: string): void {
    this.status = undefined;
    this.statusBar.text = '$(error) kloop';
    this.statusBar.tooltip = message + '\n\nClick for kloop actions';
    this.statusBar.backgroundColor = new vscode.ThemeColor('statusBarItem.errorBackground');
  }

  /**
   * execute runs a kloop command through workspace/executeCommand. A failure
   * becomes an error message (and a line in the output channel) and the
   * result is undefined.
   */
  async execute<T = unknown>(command: string, args?: object): Promise<T | undefined> {
    try {
      return (await this.client.sendRequest('workspace/executeCommand', {
        command,
        arguments: args === undefined ? [] : [args],
      })) as T;
    } catch (err) {
      this.reportError(command, err);
      return undefined;
    }
  }

  /**
   * serverCommand runs a kloop.* command that came from a code lens or code
   * action. "Intercept … & debug" starts a `kloop` debug session instead, so
   * VS Code's debugger is the one attached; everything else goes to kloop,
   * and a failure reads as kloop's sentence.
   */
  async serverCommand(command: string, args: unknown[], next: (command: string, args: unknown[]) => unknown): Promise<unknown> {
    const a = (args?.[0] ?? {}) as { workload?: string; program?: string; debug?: boolean; port?: string; header?: Record<string, string> };
    if (command === 'kloop.intercept' && a.debug === true && a.workload && a.program) {
      const folder = vscode.workspace.workspaceFolders?.[0];
      const config: Record<string, unknown> = {
        type: 'kloop',
        request: 'launch',
        name: `kloop: intercept ${a.workload}`,
        workload: a.workload,
        program: a.program,
      };
      if (a.port) config.port = a.port;
      if (a.header) config.header = a.header;
      const started = await vscode.debug.startDebugging(folder, config as unknown as vscode.DebugConfiguration);
      if (!started) this.output.appendLine(`kloop: the debug session for ${a.workload} did not start`);
      return started;
    }
    try {
      return await next(command, args);
    } catch (err) {
      this.reportError(command, err);
      return undefined;
    }
  }

  /** reportError shows a failed command to the user. */
  reportError(command: string, err: unknown): void {
    const msg = describeCommandError(command, err);
    this.output.appendLine(`[${new Date().toISOString()}] ${command} failed: ${msg}`);
    void vscode.window.showErrorMessage(msg, 'Show output').then((pick) => {
      if (pick === 'Show output') this.output.show(true);
    });
  }

  async claim(): Promise<unknown> {
    const pool = await vscode.window.showInputBox({
      title: 'kloop: claim a dev namespace',
      prompt: 'Pool to claim from (empty: claim.pool of .kloop.yaml, else "default")',
      placeHolder: 'default',
      validateInput: (v) => (v === '' || /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(v) ? undefined : 'Pool names are lower-case letters, digits and \'-\''),
    });
    if (pool === undefined) return undefined;
    return this.execute('kloop.claim', pool ? { pool } : {});
  }

  async release(): Promise<unknown> {
    const where = this.status?.claim ? (this.status.claim.namespace || this.status.claim.slot) : 'the claimed slot';
    const ok = await vscode.window.showWarningMessage(
      `Release ${where}? Its workloads are reset and the slot goes back to the pool.`,
      { modal: true },
      'Release',
    );
    if (ok !== 'Release') return undefined;
    return this.execute('kloop.release', {});
  }

  /**
   * listWorkloads asks kloop for the namespace's workloads. A failure (no
   * cluster yet, RBAC) is logged, not shown: the callers fall back to
   * asking for a name, which is still useful.
   */
  async listWorkloads(): Promise<WorkloadsResult | undefined> {
    try {
      return (await this.client.sendRequest('workspace/executeCommand', { command: 'kloop.workloads', arguments: [{}] })) as WorkloadsResult;
    } catch (err) {
      this.output.appendLine(`[${new Date().toISOString()}] kloop.workloads failed, asking for a workload by name: ${describeCommandError('kloop.workloads', err)}`);
      return undefined;
    }
  }

  /**
   * askWorkload lets the user pick one of the namespace's workloads, or
   * type one when kloop cannot list them or lists none.
   */
  private async askWorkload(title: string): Promise<string | undefined> {
    const listed = await this.listWorkloads();
    if (listed && listed.workloads?.length > 0) {
      const current = this.status?.intercepts?.[0]?.workload;
      const items = workloadItems(listed);
      // The workload being intercepted comes first: it is the likely one.
      const i = current ? items.findIndex((it) => it.workload === current) : -1;
      if (i > 0) items.unshift(...items.splice(i, 1));
      const pick = await vscode.window.showQuickPick(items, {
        title,
        placeHolder: `Workloads of namespace ${listed.namespace}`,
        matchOnDescription: true,
        matchOnDetail: true,
      });
      if (!pick) return undefined;
      if (pick.workload) return pick.workload;
    }
    return this.typeWorkload(title);
  }

  private async typeWorkload(title: string): Promise<string | undefined> {
    const first = this.status?.intercepts?.[0]?.workload;
    const w = await vscode.window.showInputBox({
      title,
      prompt: 'Workload: deployment/NAME, statefulset/NAME or a bare NAME (a deployment)',
      placeHolder: 'deployment/orders',
      value: first,
      validateInput: (v) => validateWorkload(v),
    });
    return w === undefined ? undefined : normalizeWorkload(w);
  }

  /**
   * workloads is the palette's "List the namespace's workloads": pick one,
   * then what to do with it.
   */
  async workloads(): Promise<unknown> {
    const listed = await this.execute<WorkloadsResult>('kloop.workloads', {});
    if (!listed) return undefined;
    if (!listed.workloads || listed.workloads.length === 0) {
      void vscode.window.showInformationMessage(`kloop: namespace ${listed.namespace} has no Deployments or StatefulSets.`);
      return undefined;
    }
    const pick = await vscode.window.showQuickPick(workloadItems(listed).filter((it) => it.workload), {
      title: `kloop: workloads of namespace ${listed.namespace}`,
      matchOnDescription: true,
      matchOnDetail: true,
    });
    if (!pick?.workload) return undefined;
    const workload = pick.workload;
    const action = await vscode.window.showQuickPick([
      { label: '$(arrow-swap) Intercept', run: () => this.execute('kloop.intercept', { workload }) },
      { label: '$(clippy) Copy env (dotenv)', run: () => this.copyEnvOf(workload) },
      { label: '$(cloud-download) Install a resident agent', run: () => this.installAgentInto(workload) },
    ], { title: `kloop: ${workload}` });
    return action?.run();
  }

  async intercept(): Promise<unknown> {
    const workload = await this.askWorkload('kloop: intercept a workload');
    if (!workload) return undefined;
    return this.execute('kloop.intercept', { workload });
  }

  async leave(): Promise<unknown> {
    const intercepts = this.status?.intercepts ?? [];
    let args: object = { all: true };
    if (intercepts.length > 1) {
      const pick = await vscode.window.showQuickPick(
        [{ label: 'All intercepts', all: true }, ...intercepts.map((i) => ({ label: i.workload, all: false }))],
        { title: 'kloop: leave which intercept?' },
      );
      if (!pick) return undefined;
      args = pick.all ? { all: true } : { workload: pick.label };
    } else if (intercepts.length === 1) {
      args = { workload: intercepts[0].workload };
    }
    return this.execute('kloop.leave', args);
  }

  async relaunch(): Promise<unknown> {
    return this.execute('kloop.relaunch', {});
  }

  async showStatus(): Promise<KloopStatus | undefined> {
    const st = await this.execute<KloopStatus>('kloop.status');
    if (!st) return undefined;
    this.onStatus(st);
    this.output.appendLine(`kloop status for ${st.workspace}:`);
    this.output.appendLine(this.statusBar.tooltip as string);
    this.output.appendLine(JSON.stringify(st, null, 2));
    this.output.show(true);
    return st;
  }

  /** showLogs puts the program's last output lines (kept by the daemon, in memory) in the output channel. */
  async showLogs(): Promise<number | undefined> {
    const res = await this.execute<{ program: string; lines: { stream: string; line: string }[] }>('kloop.logs', {});
    if (!res) return undefined;
    this.output.appendLine(`kloop: last ${res.lines.length} lines of ${res.program}:`);
    for (const l of res.lines) this.output.appendLine(l.line);
    this.output.show(true);
    return res.lines.length;
  }

  /** doctor runs kloop.doctor and writes each finding, with its fix, to the output. */
  async doctor(): Promise<boolean | undefined> {
    const res = await this.execute<{ healthy: boolean; findings: { check: string; status: string; detail: string; fix?: string }[] }>('kloop.doctor', {});
    if (!res) return undefined;
    for (const f of res.findings) {
      this.output.appendLine(`kloop doctor: ${f.status.toUpperCase()} ${f.check}: ${f.detail}`);
      if (f.fix) this.output.appendLine(`  fix: ${f.fix}`);
    }
    this.output.show(true);
    if (!res.healthy) void vscode.window.showWarningMessage('kloop doctor found problems; see the kloop output for each fix.');
    return res.healthy;
  }

  /** pickRequest lists the requests the daemon recorded; the one picked is replayed. */
  async pickRequest(): Promise<ReplayResult | undefined> {
    const picked = await this.pickRecorded('kloop: replay a recorded request', 'Sent again to your process only, never to the cluster');
    return picked && this.replay(picked);
  }

  /** pickRecorded asks for one of the recorded requests, newest first. */
  private async pickRecorded(title: string, placeHolder: string): Promise<RecordedRequest | undefined> {
    const res = await this.execute<{ requests: RecordedRequest[] }>('kloop.requests', {});
    if (!res) return undefined;
    if (!res.requests || res.requests.length === 0) {
      void vscode.window.showInformationMessage('kloop: no requests recorded yet; they are recorded while a workload is intercepted.');
      return undefined;
    }
    const items = [...res.requests].reverse().map((r) => ({
      label: `#${r.id} ${r.method} ${r.target}` + (r.response ? ` → ${r.response.status}` : ''),
      description: `${r.workload} · pid ${r.pid ?? '?'}`,
      request: r,
    }));
    const pick = await vscode.window.showQuickPick(items, { title, placeHolder });
    return pick?.request;
  }

  /**
   * replay sends a recorded request (the last one when none is given) again
   * to the local process and shows how the answer differs from the recorded
   * one. A method that may change data asks first.
   */
  async replay(req?: RecordedRequest): Promise<ReplayResult | undefined> {
    const args: { id?: number; yes?: boolean } = {};
    if (req) {
      args.id = req.id;
      if (!['GET', 'HEAD', 'OPTIONS', 'TRACE'].includes(req.method)) {
        const ok = await vscode.window.showWarningMessage(
          `kloop: #${req.id} is a ${req.method}, which may change data when sent again. Replay it?`, { modal: true }, 'Replay');
        if (ok !== 'Replay') return undefined;
        args.yes = true;
      }
    }
    const res = await this.execute<ReplayResult>('kloop.replay', args);
    if (!res) return undefined;
    const head = `kloop: replayed #${res.request.id} ${res.request.method} ${res.request.target} to pid ${res.pid}: ${res.response.status}`;
    this.output.appendLine(head);
    for (const d of res.diff ?? []) this.output.appendLine('  ' + d);
    if (res.same) {
      void vscode.window.showInformationMessage(`${head}, same answer as recorded.`);
    } else {
      await this.showReplayDiff(res);
      void vscode.window.showInformationMessage(`${head}; ${res.diff?.length ?? 0} differences (see the diff and the kloop output).`);
    }
    return res;
  }

  /** showReplayDiff opens VS Code's diff editor on the recorded and the new answer. */
  async showReplayDiff(res: ReplayResult): Promise<void> {
    const paths = replayPaths(res.request.id, ++this.replays);
    this.replayDocs.docs.set(paths.recorded, answerText(res.request.response));
    this.replayDocs.docs.set(paths.replayed, answerText(res.response));
    const left = vscode.Uri.from({ scheme: replayScheme, path: paths.recorded });
    const right = vscode.Uri.from({ scheme: replayScheme, path: paths.replayed });
    const title = `#${res.request.id} ${res.request.method} ${res.request.target}: recorded (pid ${res.request.pid ?? '?'}) ↔ replayed (pid ${res.pid})`;
    await vscode.commands.executeCommand('vscode.diff', left, right, title, { preview: true });
  }

  /**
   * exportTest writes a recorded request (picked from the list) as a Go
   * test beside the program and opens it.
   */
  async exportTest(): Promise<ExportResult | undefined> {
    const picked = await this.pickRecorded('kloop: export a recorded request as a Go test', 'Its outbound calls become stubs; the test needs no cluster');
    if (!picked) return undefined;
    const out = await this.execute<ExportResult>('kloop.export', { id: picked.id, format: 'go-test' });
    if (!out) return undefined;
    await vscode.window.showTextDocument(vscode.Uri.file(out.file));
    void vscode.window.showInformationMessage(`kloop: wrote ${out.test} (${out.outbound} outbound calls stubbed); run it with go test -run ${out.test}.`);
    return out;
  }

  async copyEnv(): Promise<string | undefined> {
    const workload = await this.askWorkload('kloop: copy the env of a workload (dotenv)');
    if (!workload) return undefined;
    return this.copyEnvOf(workload);
  }

  private async copyEnvOf(workload: string): Promise<string | undefined> {
    const res = await this.execute<{ format: string; content: string }>('kloop.env', { workload, format: 'dotenv' });
    if (!res) return undefined;
    await vscode.env.clipboard.writeText(res.content);
    const n = res.content.split('\n').filter((l) => /^[A-Za-z_][A-Za-z0-9_]*=/.test(l)).length;
    void vscode.window.showInformationMessage(`Copied ${n} variables of ${workload} to the clipboard (dotenv).`);
    return res.content;
  }

  /** installAgent installs a resident agent: later intercepts start without a rollout. */
  async installAgent(): Promise<unknown> {
    const workload = await this.askWorkload('kloop: install a resident agent into a workload');
    if (!workload) return undefined;
    return this.installAgentInto(workload);
  }

  private async installAgentInto(workload: string): Promise<unknown> {
    const res = await this.execute<{ workload: string; ports: number[]; existing?: boolean }>('kloop.agent.install', { workload });
    if (res) {
      void vscode.window.showInformationMessage(res.existing
        ? `The kloop agent already in ${res.workload} now stays; intercepts of it start without a rollout.`
        : `Installed a resident kloop agent in ${res.workload} (ports ${res.ports.join(', ')}); intercepts of it start without a rollout.`);
    }
    return res;
  }

  async uninstallAgent(): Promise<unknown> {
    const workload = await this.askWorkload('kloop: remove the resident agent of a workload');
    if (!workload) return undefined;
    const res = await this.execute('kloop.agent.uninstall', { workload });
    if (res) void vscode.window.showInformationMessage(`Removed the kloop agent from ${workload}.`);
    return res;
  }

  async actions(): Promise<unknown> {
    const pick = await vscode.window.showQuickPick(actionsFor(this.status), { title: 'kloop', placeHolder: this.statusBar.text });
    if (!pick) return undefined;
    return vscode.commands.executeCommand(pick.command);
  }

  dispose(): void {
    this.statusBar.dispose();
    for (const d of this.disposables) d.dispose();
  }
}

/** RecordedRequest is one exchange of kloop.requests (credentials masked). */
export interface RecordedRequest {
  id: number;
  workload: string;
  method: string;
  target: string;
  pid?: number;
  response?: Answer;
}

/** ExportResult is kloop.export's answer. */
export interface ExportResult {
  file: string;
  test: string;
  outbound: number;
  overlapped?: boolean;
}

/** ReplayResult is kloop.replay's answer. */
export interface ReplayResult {
  request: RecordedRequest;
  response: Answer;
  pid: number;
  same: boolean;
  diff?: string[];
}
