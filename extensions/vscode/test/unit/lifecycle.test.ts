// The language client's lifecycle: restart in place, settings changes, a
// missing or broken kloop.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { ClientManager, ManagedClient } from '../../src/lifecycle';
import { VersionVerdict } from '../../src/logic';

class FakeClient implements ManagedClient {
  running = false;
  constructor(readonly binary: string, readonly log: string[], private readonly failStart = false) {}
  async start() {
    this.log.push(`start ${this.binary}`);
    await new Promise((r) => setImmediate(r));
    if (this.failStart) throw new Error('exec format error');
    this.running = true;
  }
  async stop() {
    this.log.push(`stop ${this.binary}`);
    if (!this.running) throw new Error('Client is not running');
    this.running = false;
  }
  async sendRequest(method: string) {
    return `${method} via ${this.binary}`;
  }
}

function setup(binaries: Record<string, VersionVerdict | 'fails-to-start'>) {
  const events: string[] = [];
  const problems: string[] = [];
  const kinds: string[] = [];
  const clients: FakeClient[] = [];
  let setting = Object.keys(binaries)[0];
  const m = new ClientManager<FakeClient>({
    binary: () => setting,
    probe: async (b) => {
      const v = binaries[b];
      return v === 'fails-to-start' ? { ok: true, version: 'v0.1.0', dev: false } : v;
    },
    create: (b) => {
      const c = new FakeClient(b, events, binaries[b] === 'fails-to-start');
      clients.push(c);
      return c;
    },
    log: () => {},
    problem: (msg, kind) => { problems.push(msg); kinds.push(kind); },
  });
  return { m, events, problems, kinds, clients, set: (b: string) => { setting = b; } };
}

const good: VersionVerdict = { ok: true, version: 'v0.1.0', dev: false };

test('restart stops the running client before starting one on the binary the settings name now', async () => {
  const { m, events, clients, set } = setup({ '/a/kloop': good, '/b/kloop': good });
  await m.restart();
  assert.equal(await m.sendRequest('workspace/executeCommand', {}), 'workspace/executeCommand via /a/kloop');
  set('/b/kloop');
  await m.restart();
  assert.deepEqual(events, ['start /a/kloop', 'stop /a/kloop', 'start /b/kloop']);
  assert.equal(m.binaryInUse, '/b/kloop');
  assert.deepEqual(clients.map((c) => c.running), [false, true]);
  assert.equal(await m.sendRequest('x', {}), 'x via /b/kloop');
});

test('a burst of settings changes ends with one client, on the last binary', async () => {
  const { m, clients, set } = setup({ '/a/kloop': good, '/b/kloop': good, '/c/kloop': good });
  await m.restart();
  set('/b/kloop');
  const first = m.restart();
  set('/c/kloop');
  await Promise.all([first, m.restart()]);
  assert.equal(clients.filter((c) => c.running).length, 1);
  assert.equal(m.binaryInUse, '/c/kloop');
});

test('a missing kloop leaves no client; requests fail with the reason, and fixing the path recovers', async () => {
  const missing: VersionVerdict = { ok: false, message: 'kloop was not found (/x/kloop). Install it' };
  const { m, problems, kinds, set } = setup({ '/x/kloop': missing, '/a/kloop': good });
  await m.restart();
  assert.deepEqual(problems, [missing.message]);
  assert.deepEqual(kinds, ['binary'], 'offered: install kloop or fix kloop.path');
  assert.equal(m.client, undefined);
  await assert.rejects(m.sendRequest('workspace/executeCommand', {}), /kloop was not found/);
  set('/a/kloop');
  await m.restart();
  assert.equal(m.problem, undefined);
  assert.equal(await m.sendRequest('y', {}), 'y via /a/kloop');
});

test('a kloop lsp that does not start is reported and not kept as the client', async () => {
  const { m, problems, kinds } = setup({ '/broken/kloop': 'fails-to-start' });
  await m.restart();
  assert.deepEqual(kinds, ['start'], 'offered: the output and a restart, not an install');
  assert.equal(m.client, undefined);
  assert.match(problems[0], /^kloop lsp did not start: exec format error$/);
  await assert.rejects(m.sendRequest('z', {}), /kloop lsp did not start/);
});

test('only kloop.path and kloop.standalone restart the client', () => {
  const { m } = setup({ '/a/kloop': good });
  const change = (...keys: string[]) => ({ affectsConfiguration: (s: string) => keys.includes(s) });
  assert.ok(m.affects(change('kloop.path')));
  assert.ok(m.affects(change('kloop.standalone')));
  assert.ok(!m.affects(change('kloop.trace.server')));
  assert.ok(!m.affects(change('go.gopath')));
});
