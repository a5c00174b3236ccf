import { beforeEach, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as vscode from 'vscode';
import { Controller, KloopClient } from '../../src/controller';
import { KloopStatus } from '../../src/logic';
// eslint-disable-next-line @typescript-eslint/no-require-imports
const stub = require('vscode') as typeof import('./vscode-stub');

class FakeClient implements KloopClient {
  calls: Array<{ command: string; arguments: unknown[] }> = [];
  replies = new Map<string, unknown>();
  async sendRequest(method: string, params: { command: string; arguments: unknown[] }): Promise<unknown> {
    assert.equal(method, 'workspace/executeCommand');
    this.calls.push(params);
    const r = this.replies.get(params.command);
    if (r instanceof Error) throw r;
    return r;
  }
}

function rpcError(code: number, message: string): Error {
  return Object.assign(new Error(message), { code });
}

const active: KloopStatus = {
  workspace: '/w',
  claim: { pool: 'dev', slot: 'dev-1', namespace: 'dev-1', holder: 'me', until: '2099-01-01T00:00:00Z', kubeconfig: '/k' },
  intercepts: [{ workload: 'deployment/orders', ports: ['8080'], requests: 3, state: 'active' }],
  lastRelaunchMillis: 1500,
  updated: '',
};

let client: FakeClient;
let ctl: Controller;
beforeEach(() => {
  stub.reset();
  client = new FakeClient();
  ctl = new Controller(client, vscode.window.createOutputChannel('kloop'));
  ctl.register();
});

test('the status bar follows kloop/status and its click opens the actions', async () => {
  assert.equal(ctl.statusBar.text, '$(sync~spin) kloop');
  assert.equal(ctl.statusBar.command, 'kloop.actions');
  ctl.onStatus(active);
  assert.equal(ctl.statusBar.text, '$(cloud) dev-1  $(arrow-swap) orders 3 req  $(debug-restart) 1.5s');
  assert.equal(ctl.statusBar.backgroundColor, undefined);
  ctl.onStatus({ workspace: '/w', intercepts: [], updated: '' });
  assert.equal(ctl.statusBar.text, '$(cloud) no claim');
  assert.equal((ctl.statusBar.backgroundColor as unknown as { id: string }).id, 'statusBarItem.warningBackground');
});

test('picking an action in the quick pick runs it against kloop', async () => {
  ctl.onStatus(active);
  stub.answers.push('kloop.relaunch.ui');
  await vscode.commands.executeCommand('kloop.actions');
  assert.equal(stub.recorded.quickPicks.length, 1);
  assert.deepEqual(client.calls, [{ command: 'kloop.relaunch', arguments: [{}] }]);
});

test('every palette command is registered', () => {
  const ids = (vscode.commands as unknown as { registered(): string[] }).registered();
  for (const id of ['kloop.workloads.ui', 'kloop.claim.ui', 'kloop.release.ui', 'kloop.intercept.ui', 'kloop.leave.ui', 'kloop.status.ui', 'kloop.relaunch.ui', 'kloop.env.ui', 'kloop.logs.ui', 'kloop.requests.ui', 'kloop.replay.ui', 'kloop.doctor.ui', 'kloop.export.ui', 'kloop.agent.install.ui', 'kloop.agent.uninstall.ui', 'kloop.actions', 'kloop.showOutput']) {
    assert.ok(ids.includes(id), id);
  }
});

test('doctor writes each finding with its fix and warns when one failed', async () => {
  client.replies.set('kloop.doctor', {
    healthy: false,
    findings: [
      { check: 'cluster', status: 'ok', detail: 'API server https://x, Kubernetes v1.37.2' },
      { check: 'permissions/intercept', status: 'fail', detail: 'not allowed: update deployments.apps', fix: 'ask for Role kloop-intercept from deploy/intercept-rbac.yaml' },
    ],
  });
  const healthy = await ctl.doctor();
  assert.equal(healthy, false);
  assert.deepEqual(client.calls, [{ command: 'kloop.doctor', arguments: [{}] }]);
  const out = (ctl as unknown as { output: { lines: string[] } }).output.lines.join('\n');
  assert.match(out, /OK cluster: API server/);
  assert.match(out, /FAIL permissions\/intercept: not allowed: update deployments.apps\n  fix: ask for Role kloop-intercept from deploy\/intercept-rbac.yaml/);
  assert.equal(stub.recorded.warnings.length, 1);
});

test('claim asks for a pool and sends it; empty means the configured pool', async () => {
  stub.answers.push('dev');
  await vscode.commands.executeCommand('kloop.claim.ui');
  stub.answers.push('');
  await vscode.commands.executeCommand('kloop.claim.ui');
  assert.deepEqual(client.calls, [
    { command: 'kloop.claim', arguments: [{ pool: 'dev' }] },
    { command: 'kloop.claim', arguments: [{}] },
  ]);
});

test('intercept turns a bare name into a deployment; cancelling sends nothing', async () => {
  stub.answers.push('orders');
  await vscode.commands.executeCommand('kloop.intercept.ui');
  await vscode.commands.executeCommand('kloop.intercept.ui'); // Escape
  // No list from kloop (the fake answers nothing): the input box both times.
  assert.deepEqual(client.calls, [
    { command: 'kloop.workloads', arguments: [{}] },
    { command: 'kloop.intercept', arguments: [{ workload: 'deployment/orders' }] },
    { command: 'kloop.workloads', arguments: [{}] },
  ]);
});

test('a failing command surfaces kloop\'s message as an error, logged in the output channel', async () => {
  client.replies.set('kloop.intercept', rpcError(-32001, 'kloop: kloop.intercept is not available in this build: intercepts are not wired'));
  stub.answers.push('deployment/orders');
  const r = await vscode.commands.executeCommand('kloop.intercept.ui');
  assert.equal(r, undefined);
  assert.deepEqual(stub.recorded.errors, ['kloop: kloop.intercept is not available in this build: intercepts are not wired']);
  assert.match((ctl.output as unknown as { lines: string[] }).lines.join('\n'), /kloop\.intercept failed/);
});

test('leave names the only intercept; release asks first', async () => {
  ctl.onStatus(active);
  await vscode.commands.executeCommand('kloop.leave.ui');
  stub.answers.push(undefined); // dismisses the modal
  await vscode.commands.executeCommand('kloop.release.ui');
  stub.answers.push('Release');
  await vscode.commands.executeCommand('kloop.release.ui');
  assert.deepEqual(client.calls, [
    { command: 'kloop.leave', arguments: [{ workload: 'deployment/orders' }] },
    { command: 'kloop.release', arguments: [{}] },
  ]);
  assert.match(stub.recorded.warnings[0], /Release dev-1\?/);
});

test('copy env puts the dotenv on the clipboard and says how many variables', async () => {
  client.replies.set('kloop.env', { format: 'dotenv', content: 'A=1\nB="two\\nlines"\n' });
  stub.answers.push('orders');
  await vscode.commands.executeCommand('kloop.env.ui');
  assert.deepEqual(client.calls, [{ command: 'kloop.workloads', arguments: [{}] }, { command: 'kloop.env', arguments: [{ workload: 'deployment/orders', format: 'dotenv' }] }]);
  assert.equal(stub.recorded.clipboard, 'A=1\nB="two\\nlines"\n');
  assert.deepEqual(stub.recorded.infos, ['Copied 2 variables of deployment/orders to the clipboard (dotenv).']);
});

test('status asks kloop, redraws the bar and prints to the output channel', async () => {
  client.replies.set('kloop.status', active);
  await vscode.commands.executeCommand('kloop.status.ui');
  assert.deepEqual(client.calls, [{ command: 'kloop.status', arguments: [] }]);
  assert.match(ctl.statusBar.text, /orders 3 req/);
  const out = ctl.output as unknown as { lines: string[]; shown: boolean };
  assert.ok(out.shown);
  assert.match(out.lines.join('\n'), /Intercepting deployment\/orders/);
});

test('the "& debug" lens starts a kloop debug session; other lenses run in kloop', async () => {
  stub.workspace.workspaceFolders = [{ uri: { fsPath: '/w' }, name: 'w' }];
  const sent: Array<[string, unknown[]]> = [];
  const next = async (c: string, a: unknown[]) => { sent.push([c, a]); return 'ran'; };
  const lens = { workload: 'deployment/orders', program: './cmd/orders', debug: true };
  assert.equal(await ctl.serverCommand('kloop.intercept', [lens], next), true);
  assert.deepEqual(stub.debug.started.map((s) => s.config), [
    { type: 'kloop', request: 'launch', name: 'kloop: intercept deployment/orders', workload: 'deployment/orders', program: './cmd/orders' },
  ]);
  assert.deepEqual(sent, []);
  assert.equal(await ctl.serverCommand('kloop.intercept', [{ workload: 'deployment/orders', program: './cmd/orders' }], next), 'ran');
  assert.equal(sent.length, 1);
  const failing = async () => { throw Object.assign(new Error('kloop: kloop.claim: no pool "dev"'), { code: -32803 }); };
  assert.equal(await ctl.serverCommand('kloop.claim', [{ pool: 'dev' }], failing), undefined);
  assert.deepEqual(stub.recorded.errors, ['kloop: kloop.claim: no pool "dev"']);
  stub.workspace.workspaceFolders = undefined;
});

test('a picked request is replayed, a POST only once confirmed, and the difference is shown', async () => {
  const get = { id: 3, workload: 'deployment/orders', method: 'GET', target: '/orders/1', pid: 10, response: { status: 200 } };
  const post = { id: 4, workload: 'deployment/orders', method: 'POST', target: '/orders', pid: 10, response: { status: 201 } };
  client.replies.set('kloop.requests', { requests: [get, post] });
  client.replies.set('kloop.replay', { request: get, response: { status: 200 }, pid: 11, same: false, diff: ['$.build: "v1" → "v2"'] });
  stub.answers.push('#3 GET /orders/1 → 200');
  const res = await vscode.commands.executeCommand('kloop.requests.ui');
  assert.equal((res as { pid: number }).pid, 11);
  assert.deepEqual(client.calls.map((c) => c.arguments[0]), [{}, { id: 3 }]);
  const lines = (ctl as unknown as { output: { lines: string[] } }).output.lines;
  assert.ok(lines.includes('kloop: replayed #3 GET /orders/1 to pid 11: 200'), lines.join('\n'));
  assert.ok(lines.includes('  $.build: "v1" → "v2"'), lines.join('\n'));

  // The POST: declined sends nothing; confirmed sends yes.
  client.calls = [];
  stub.answers.push('#4 POST /orders → 201', undefined);
  await vscode.commands.executeCommand('kloop.requests.ui');
  assert.deepEqual(client.calls.map((c) => c.command), ['kloop.requests']);
  client.calls = [];
  stub.answers.push('#4 POST /orders → 201', 'Replay');
  await vscode.commands.executeCommand('kloop.requests.ui');
  assert.deepEqual(client.calls.map((c) => c.arguments[0]), [{}, { id: 4, yes: true }]);
});

test('a changed answer opens a diff editor of read-only kloop-replay documents: recorded left, replayed right', async () => {
  const recorded = { status: 200, header: { 'Content-Type': ['application/json'], Date: ['Mon'] }, body: '{"order":{"id":"1"},"build":"v1"}' };
  const replayed = { status: 200, header: { 'Content-Type': ['application/json'], Date: ['Tue'] }, body: '{"build":"v2","order":{"id":"1"}}' };
  client.replies.set('kloop.replay', {
    request: { id: 3, workload: 'deployment/orders', method: 'GET', target: '/orders/1', pid: 10, response: recorded },
    response: replayed, pid: 11, same: false, diff: ['$.build: "v1" → "v2"'],
  });
  await vscode.commands.executeCommand('kloop.replay.ui');
  const diff = stub.recorded.executed.find((e: { command: string }) => e.command === 'vscode.diff');
  assert.ok(diff, JSON.stringify(stub.recorded.executed));
  const [left, right, title] = diff.args as [InstanceType<typeof stub.Uri>, InstanceType<typeof stub.Uri>, string];
  assert.equal(left.scheme, 'kloop-replay');
  assert.equal(right.scheme, 'kloop-replay');
  assert.equal(title, '#3 GET /orders/1: recorded (pid 10) ↔ replayed (pid 11)');
  const provider = stub.providers.get('kloop-replay');
  assert.ok(provider, 'no content provider for kloop-replay:');
  const expected = (build: string) => `HTTP 200\nContent-Type: application/json\n\n{\n  "build": "${build}",\n  "order": {\n    "id": "1"\n  }\n}\n`;
  // JSON indented with sorted keys, so the diff is the changed field only; Date is left out.
  assert.equal(provider.provideTextDocumentContent(left), expected('v1'));
  assert.equal(provider.provideTextDocumentContent(right), expected('v2'));
});

test('the same answer opens no diff', async () => {
  client.replies.set('kloop.replay', { request: { id: 9, workload: 'deployment/orders', method: 'GET', target: '/x', response: { status: 200 } }, response: { status: 200 }, pid: 5, same: true });
  await vscode.commands.executeCommand('kloop.replay.ui');
  assert.ok(!stub.recorded.executed.some((e: { command: string }) => e.command === 'vscode.diff'));
});

test('export writes the picked request as a Go test and opens the file', async () => {
  const get = { id: 3, workload: 'deployment/orders', method: 'GET', target: '/orders/1', pid: 10, response: { status: 200 } };
  client.replies.set('kloop.requests', { requests: [get] });
  client.replies.set('kloop.export', { file: '/w/kloop_request_3_test.go', test: 'TestKloopRequest3', outbound: 1 });
  stub.answers.push('#3 GET /orders/1 → 200');
  await vscode.commands.executeCommand('kloop.export.ui');
  assert.deepEqual(client.calls.map((c) => [c.command, c.arguments[0]]), [['kloop.requests', {}], ['kloop.export', { id: 3, format: 'go-test' }]]);
  assert.deepEqual(stub.recorded.shownDocuments.map((u: { scheme: string; path: string }) => `${u.scheme}:${u.path}`), ['file:/w/kloop_request_3_test.go']);
  assert.ok(stub.recorded.infos.some((m: string) => m.includes('go test -run TestKloopRequest3')), stub.recorded.infos.join('\n'));
});

test('replay with no argument replays the last request', async () => {
  client.replies.set('kloop.replay', { request: { id: 9, workload: 'deployment/orders', method: 'GET', target: '/x' }, response: { status: 200 }, pid: 5, same: true });
  await vscode.commands.executeCommand('kloop.replay.ui');
  assert.deepEqual(client.calls, [{ command: 'kloop.replay', arguments: [{}] }]);
  assert.ok(stub.recorded.infos.some((m: string) => m.includes('same answer as recorded')), stub.recorded.infos.join('\n'));
});

const listed = {
  namespace: 'dev-1',
  workloads: [
    { workload: 'deployment/orders', kind: 'deployment', name: 'orders', ready: 2, replicas: 2, ports: [{ container: 'app', port: 8080, name: 'http', protocol: 'TCP' }] },
    {
      workload: 'statefulset/ledger', kind: 'statefulset', name: 'ledger', ready: 1, replicas: 1, ports: [{ container: 'db', port: 5432, protocol: 'TCP' }],
      agent: { resident: true, holders: [{ name: 'ana@laptop', rule: 'x-dev=ana' }] },
    },
  ],
};

test('the workload prompts pick from kloop.workloads, showing replicas, ports and who intercepts', async () => {
  client.replies.set('kloop.workloads', listed);
  stub.answers.push('statefulset/ledger');
  await vscode.commands.executeCommand('kloop.intercept.ui');
  assert.deepEqual(client.calls, [
    { command: 'kloop.workloads', arguments: [{}] },
    { command: 'kloop.intercept', arguments: [{ workload: 'statefulset/ledger' }] },
  ]);
  assert.equal(stub.recorded.inputBoxes.length, 0, 'no input box when kloop lists workloads');
  const [{ items, options }] = stub.recorded.quickPicks;
  assert.equal(options.title, 'kloop: intercept a workload');
  assert.deepEqual(items.map((i: { label: string; description?: string; detail?: string }) => [i.label, i.description, i.detail]), [
    ['deployment/orders', '2/2 ready · ports 8080 (http)', undefined],
    ['statefulset/ledger', '1/1 ready · ports 5432', 'resident kloop agent; intercepted by ana@laptop (x-dev=ana)'],
    ['$(edit) Type a workload name…', 'not listed in namespace dev-1', undefined],
  ]);

  // Env and the agent commands use the same picker; Escape sends nothing.
  client.calls = [];
  client.replies.set('kloop.env', { format: 'dotenv', content: 'A=1\n' });
  stub.answers.push('deployment/orders');
  await vscode.commands.executeCommand('kloop.env.ui');
  await vscode.commands.executeCommand('kloop.agent.uninstall.ui'); // Escape
  assert.deepEqual(client.calls.map((c) => [c.command, c.arguments[0]]), [
    ['kloop.workloads', {}], ['kloop.env', { workload: 'deployment/orders', format: 'dotenv' }], ['kloop.workloads', {}],
  ]);
});

test('the workload picker falls back to an input box when kloop.workloads fails, lists none, or the user types one', async () => {
  client.replies.set('kloop.workloads', rpcError(-32603, 'kloop: kloop.workloads: not allowed to list deployments in namespace dev-1 (RBAC)'));
  stub.answers.push('orders');
  await vscode.commands.executeCommand('kloop.intercept.ui');
  assert.equal(stub.recorded.quickPicks.length, 0);
  assert.equal(stub.recorded.inputBoxes.length, 1);
  assert.deepEqual(stub.recorded.errors, [], 'the failed listing is not an error for the user: they can still type a name');
  assert.match((ctl.output as unknown as { lines: string[] }).lines.join('\n'), /kloop\.workloads failed, asking for a workload by name: .*not allowed to list deployments/);

  client.replies.set('kloop.workloads', { namespace: 'dev-1', workloads: [] });
  stub.answers.push('sts/ledger');
  await vscode.commands.executeCommand('kloop.intercept.ui');
  assert.equal(stub.recorded.quickPicks.length, 0);
  assert.equal(stub.recorded.inputBoxes.length, 2);

  client.replies.set('kloop.workloads', listed);
  stub.answers.push('$(edit) Type a workload name…', 'payments');
  await vscode.commands.executeCommand('kloop.intercept.ui');
  assert.equal(stub.recorded.quickPicks.length, 1);
  assert.equal(stub.recorded.inputBoxes.length, 3);
  assert.deepEqual(client.calls.filter((c) => c.command === 'kloop.intercept').map((c) => c.arguments[0]), [
    { workload: 'deployment/orders' }, { workload: 'sts/ledger' }, { workload: 'deployment/payments' },
  ]);
});

test('the palette\'s workload list runs the action picked for the workload picked', async () => {
  client.replies.set('kloop.workloads', listed);
  client.replies.set('kloop.agent.install', { workload: 'deployment/orders', ports: [8080] });
  stub.answers.push('deployment/orders', '$(cloud-download) Install a resident agent');
  await vscode.commands.executeCommand('kloop.workloads.ui');
  assert.deepEqual(client.calls.map((c) => [c.command, c.arguments[0]]), [['kloop.workloads', {}], ['kloop.agent.install', { workload: 'deployment/orders' }]]);
  assert.ok(!stub.recorded.quickPicks[0].items.some((i: { label: string }) => i.label.startsWith('$(edit)')), 'the list offers only listed workloads');
  assert.match(stub.recorded.infos[0], /Installed a resident kloop agent in deployment\/orders/);
});
