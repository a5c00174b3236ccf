import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import {
  KloopStatus, actionsFor, checkVersion, describeCommandError, formatStatus, goMainOf,
  answerText, initializationOptions, missingBinaryMessage, normalizeWorkload, replayViewFeature, resolveLaunch, validateWorkload,
} from '../../src/logic';

const idle: KloopStatus = { workspace: '/w', intercepts: [], updated: '2026-01-01T00:00:00Z' };
const busy: KloopStatus = {
  workspace: '/w',
  claim: { pool: 'dev', slot: 'dev-3', namespace: 'dev-3', holder: 'me@box', until: '2026-01-01T08:00:00Z', kubeconfig: '/k' },
  intercepts: [{ workload: 'deployment/orders', ports: ['8080'], header: { 'x-dev': 'me' }, requests: 12, state: 'active' }],
  process: { program: './cmd/orders', pid: 42, state: 'running' },
  lastBuild: { ok: true, millis: 800, at: '2026-01-01T00:01:00Z', errors: 0 },
  lastRelaunchMillis: 420,
  updated: '2026-01-01T00:01:00Z',
};

test('version check accepts current, dev and pseudo versions and names the minimum when too old', () => {
  assert.deepEqual(checkVersion('kloop devel\n', 'kloop'), { ok: true, version: 'devel', dev: true });
  assert.equal(checkVersion('kloop v0.3.1\n', 'kloop').ok, true);
  assert.equal(checkVersion('kloop v1.0.0\n', 'kloop').ok, true);
  assert.equal(checkVersion('kloop v0.0.0-20260101120000-abcdef123456\n', 'kloop').ok, true);
  const old = checkVersion('kloop v0.0.9\n', '/opt/kloop');
  assert.equal(old.ok, false);
  assert.match((old as { message: string }).message, /kloop v0\.0\.9 at \/opt\/kloop is too old: this extension needs kloop 0\.1\.0 or later/);
  const other = checkVersion('gopls v0.16.0\n', '/usr/bin/gopls');
  assert.equal(other.ok, false);
  assert.match((other as { message: string }).message, /does not look like kloop.*kloop\.path/);
});

test('a missing binary says how to install it and which setting to change', () => {
  const msg = missingBinaryMessage('/nope/kloop', Object.assign(new Error('spawn ENOENT'), { code: 'ENOENT' }));
  assert.match(msg, /kloop was not found \(\/nope\/kloop\)/);
  assert.match(msg, /go install github\.com\/kloop\/kloop\/cmd\/kloop@latest/);
  assert.match(msg, /"kloop\.path"/);
});

test('status bar shows claim, intercept with requests and last relaunch', () => {
  const v = formatStatus(busy, new Date('2026-01-01T05:30:00Z'));
  assert.equal(v.text, '$(cloud) dev-3  $(arrow-swap) orders 12 req  $(debug-restart) 420ms');
  assert.match(v.tooltip, /Claimed dev-3 from pool dev \(2h30m left\)/);
  assert.match(v.tooltip, /Intercepting deployment\/orders x-dev=me \(active\): 12 requests served/);
  assert.equal(v.severity, 'ok');
});

test('status bar warns while nothing is claimed and turns red on a failed build', () => {
  assert.equal(formatStatus(undefined).text, '$(sync~spin) kloop');
  const v = formatStatus(idle);
  assert.equal(v.text, '$(cloud) no claim');
  assert.equal(v.severity, 'warning');
  const failed = formatStatus({ ...busy, lastBuild: { ok: false, millis: 300, at: '', errors: 2 } });
  assert.match(failed.text, /\$\(error\) build failed/);
  assert.match(failed.tooltip, /2 error\(s\); the previous process keeps serving/);
  assert.equal(failed.severity, 'error');
  assert.equal(formatStatus({ ...idle, intercepts: null }).text, '$(cloud) no claim');
});

test('quick pick offers claim first when unclaimed, and relaunch/leave/release while busy', () => {
  const a = actionsFor(idle).map((x) => x.command);
  assert.equal(a[0], 'kloop.claim.ui');
  assert.ok(!a.includes('kloop.leave.ui'));
  assert.ok(!a.includes('kloop.release.ui'));
  const b = actionsFor(busy).map((x) => x.command);
  assert.ok(!b.includes('kloop.claim.ui'));
  for (const c of ['kloop.intercept.ui', 'kloop.relaunch.ui', 'kloop.leave.ui', 'kloop.env.ui', 'kloop.status.ui', 'kloop.release.ui']) {
    assert.ok(b.includes(c), c);
  }
});

test('workload input: bare names are deployments, wrong kinds are refused', () => {
  assert.equal(validateWorkload('orders'), undefined);
  assert.equal(validateWorkload('statefulset/redis'), undefined);
  assert.match(validateWorkload('pod/x')!, /deployment or statefulset/);
  assert.match(validateWorkload('')!, /e\.g\. deployment\/orders/);
  assert.match(validateWorkload('Orders')!, /not a valid workload name/);
  assert.equal(normalizeWorkload(' orders '), 'deployment/orders');
  assert.equal(normalizeWorkload('statefulset/redis'), 'statefulset/redis');
});

test('command errors read as kloop sentences', () => {
  assert.equal(
    describeCommandError('kloop.claim', { code: -32001, message: 'kloop: kloop.claim is not available in this build: claim pools are not wired into this daemon' }),
    'kloop: kloop.claim is not available in this build: claim pools are not wired into this daemon',
  );
  assert.equal(describeCommandError('kloop.intercept', { code: -32602, message: 'kloop: kloop.intercept: workload is required' }), 'kloop: kloop.intercept: workload is required');
  assert.equal(describeCommandError('kloop.status', new Error('Connection got disposed.')), 'kloop: Connection got disposed.');
});

test('launch configurations: F5 on a main.go fills workload and program', () => {
  const main = goMainOf('package main\n\nfunc main() {}\n', 'cmd/orders');
  assert.deepEqual(main, { program: './cmd/orders', workload: 'deployment/orders' });
  assert.equal(goMainOf('package orders\n\nfunc main() {}\n', 'cmd/orders'), undefined);
  const r = resolveLaunch({}, { activeGoMain: main });
  assert.deepEqual(r, { config: { type: 'kloop', request: 'launch', name: 'kloop: intercept deployment/orders', workload: 'deployment/orders', program: './cmd/orders' } });
  assert.match((resolveLaunch({}, {}) as { error: string }).error, /open the main\.go/);
});

test('launch configurations: hand-written mistakes are named before the adapter starts', () => {
  const base = { type: 'kloop', request: 'launch', name: 'x', workload: 'orders', program: './cmd/orders' };
  assert.deepEqual(resolveLaunch({ ...base, port: 8080 as unknown as string }, {}), { config: { ...base, port: '8080' } });
  assert.match((resolveLaunch({ ...base, port: '99999' }, {}) as { error: string }).error, /"port" "99999" must be REMOTE\[:LOCAL\]/);
  assert.match((resolveLaunch({ ...base, workload: 'pod/x' }, {}) as { error: string }).error, /"workload".*deployment or statefulset/);
  assert.match((resolveLaunch({ ...base, program: undefined }, {}) as { error: string }).error, /"program" is required/);
  assert.match((resolveLaunch({ ...base, request: 'attach' }, {}) as { error: string }).error, /use "launch"/);
});

test('the client declares kloopReplayView, keeping other experimental capabilities', () => {
  const caps: { experimental?: Record<string, unknown> } = { experimental: { other: 1 } };
  replayViewFeature.fillClientCapabilities(caps);
  assert.deepEqual(caps.experimental, { other: 1, kloopReplayView: true });
  const empty: { experimental?: Record<string, unknown> } = {};
  replayViewFeature.fillClientCapabilities(empty);
  assert.deepEqual(empty.experimental, { kloopReplayView: true });
});

test('answerText shows a non-JSON body as it is, and says when no answer was recorded', () => {
  assert.equal(answerText({ status: 500, header: { 'Content-Type': ['text/plain'] }, body: 'boom\n' }), 'HTTP 500\nContent-Type: text/plain\n\nboom\n');
  assert.equal(answerText(undefined), '(no answer was recorded)\n');
});

test('initializationOptions tell kloop the extension starts debug sessions, and its version', () => {
  assert.deepEqual(initializationOptions('0.1.0'), { startsDebugSessions: true, extensionVersion: '0.1.0' });
});

test('F5 on a main package at the folder root, or an empty "workload", debugs locally', () => {
  const root = resolveLaunch({}, { activeGoMain: goMainOf('package main\n\nfunc main() {}\n', '.') });
  assert.ok('config' in root, JSON.stringify(root));
  assert.equal(root.config.workload, undefined);
  assert.equal(root.config.program, '.');
  assert.equal(root.config.name, 'kloop: debug . locally');
  const empty = resolveLaunch({ type: 'kloop', request: 'launch', name: 'x', program: './cmd/orders', workload: '' }, {});
  assert.ok('config' in empty, JSON.stringify(empty));
  assert.ok(!('workload' in empty.config), 'no workload reaches the adapter');
  const cluster = resolveLaunch({}, { activeGoMain: goMainOf('package main\n\nfunc main() {}\n', 'cmd/orders') });
  assert.ok('config' in cluster && cluster.config.workload === 'deployment/orders');
});
