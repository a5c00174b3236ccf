// Drives the real `kloop dap` with VS Code's own DAP test client.
import { after, afterEach, before, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as cp from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import { DebugClient } from '@vscode/debugadapter-testsupport';
import { Env, kloopBin, lineOf, ordersWorkspace, privateEnv } from './helpers';
import { dynamicConfigurations } from '../../src/mains';

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}

function get(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http.get(url, { headers }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    }).on('error', reject);
  });
}

async function waitListening(port: number, ms: number): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    const ok = await new Promise<boolean>((r) => {
      const c = net.connect(port, '127.0.0.1', () => { c.destroy(); r(true); });
      c.on('error', () => r(false));
    });
    if (ok) return;
    if (Date.now() > end) throw new Error(`nothing listens on 127.0.0.1:${port} after ${ms}ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function waitClosed(port: number, ms: number): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    const open = await new Promise<boolean>((r) => {
      const c = net.connect(port, '127.0.0.1', () => { c.destroy(); r(true); });
      c.on('error', () => r(false));
    });
    if (!open) return;
    if (Date.now() > end) throw new Error(`127.0.0.1:${port} still listens ${ms}ms after the debug session ended`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe('kloop dap', () => {
  let env: Env;
  let ws: ReturnType<typeof ordersWorkspace>;
  let dc: DebugClient;
  before(() => {
    env = privateEnv();
    ws = ordersWorkspace();
  });
  // A failed assertion must not leave an adapter (and its debuggee) running.
  const running: DebugClient[] = [];
  afterEach(() => {
    for (const c of running.splice(0)) (c as unknown as { stopAdapter(): void }).stopAdapter();
  });
  after(() => {
    env.cleanup();
    fs.rmSync(ws.root, { recursive: true, force: true });
  });

  async function start(): Promise<DebugClient> {
    dc = new DebugClient(kloopBin(), 'dap', 'kloop', { env: env.env, cwd: ws.root }, true);
    dc.defaultTimeout = 120_000;
    running.push(dc);
    await dc.start();
    return dc;
  }

  test('initialize answers with the capabilities VS Code needs', async () => {
    await start();
    const r = await dc.initializeRequest({ adapterID: 'kloop', clientID: 'vscode', linesStartAt1: true, columnsStartAt1: true, pathFormat: 'path' });
    assert.equal(r.success, true);
    assert.equal(r.body?.supportsConfigurationDoneRequest, true);
    assert.equal(r.body?.supportsConditionalBreakpoints, true);
    await dc.stop();
  });

  test('launching against a workload with no reachable cluster fails with a message naming it', async () => {
    await start();
    await dc.initializeRequest();
    let failure = '';
    await assert.rejects(
      dc.launchRequest({ type: 'kloop', request: 'launch', name: 'x', workload: 'orders', program: './cmd/orders' } as never),
      (e: Error) => { failure = e.message; return true; },
    );
    // The private daemon has no kubeconfig: the launch's intercept fails,
    // and the user reads one sentence naming the workload.
    assert.match(failure, /orders/);
    assert.ok(failure.length < 400 && !/\n\s+at /.test(failure), `one readable sentence: ${failure}`);
    await dc.stop();
  });

  test('without a workload it debugs locally: a breakpoint in the handler hits on a request', async () => {
    const [httpPort, adminPort] = [await freePort(), await freePort()];
    const root = fs.mkdtempSync('/tmp/kloop-root-');
    fs.mkdirSync(`${root}/etc/orders`, { recursive: true });
    fs.writeFileSync(`${root}/etc/orders/catalog.json`, '[{"id":"1","item":"keyboard","userId":"1"}]');
    await start();
    await dc.initializeRequest({ adapterID: 'kloop', linesStartAt1: true, columnsStartAt1: true, pathFormat: 'path' });
    const initialized = dc.waitForEvent('initialized');
    await dc.launchRequest({
      type: 'kloop', request: 'launch', name: 'orders', program: './cmd/orders',
      env: {
        API_TOKEN: 't', KLOOP_ROOT: root, CATALOG_FILE: '/etc/orders/catalog.json',
        HTTP_ADDR: `127.0.0.1:${httpPort}`, ADMIN_ADDR: `127.0.0.1:${adminPort}`,
      },
    } as never);
    await initialized;
    // 1-based: the first statement of the GET /orders/{id} handler.
    const bpLine = lineOf(ws.main, /served\.Add\(1\)/) + 1;
    const bps = await dc.setBreakpointsRequest({ source: { path: ws.main }, breakpoints: [{ line: bpLine }] });
    assert.equal(bps.body.breakpoints[0].verified, true, JSON.stringify(bps.body));
    await dc.configurationDoneRequest();
    await waitListening(httpPort, 60_000);
    let answered = false;
    const reply = get(`http://127.0.0.1:${httpPort}/orders/9`).then((r) => { answered = true; return r; });
    const stopped = await dc.assertStoppedLocation('breakpoint', { path: ws.main, line: bpLine });
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(answered, false, 'the request is held while the program sits at the breakpoint');
    await dc.continueRequest({ threadId: stopped.body.stackFrames.length ? (await dc.threadsRequest()).body.threads[0].id : 1 });
    assert.deepEqual(await reply, { status: 404, body: 'no order 9\n' });
    await dc.disconnectRequest({ terminateDebuggee: true });
    (dc as unknown as { stopAdapter(): void }).stopAdapter();
    // Stopping the session frees the program's port.
    await waitClosed(httpPort, 10_000);
    fs.rmSync(root, { recursive: true, force: true });
  });

  test('Run and Debug\'s configuration for ./cmd/orders, with schema attributes added, launches as written', async () => {
    const offered = await dynamicConfigurations(ws.root);
    const cfg = offered.find((c) => c.program === './cmd/orders');
    assert.ok(cfg, `./cmd/orders among ${JSON.stringify(offered.map((c) => c.program))}`);
    const [httpPort, adminPort] = [await freePort(), await freePort()];
    const root = fs.mkdtempSync('/tmp/kloop-root-');
    fs.mkdirSync(`${root}/etc/orders`, { recursive: true });
    fs.writeFileSync(`${root}/etc/orders/catalog.json`, '[]');
    await start();
    const stderr: string[] = [];
    dc.on('output', (e) => { if (e.body.category === 'stderr') stderr.push(e.body.output); });
    await dc.initializeRequest({ adapterID: 'kloop', linesStartAt1: true, columnsStartAt1: true, pathFormat: 'path' });
    const initialized = dc.waitForEvent('initialized');
    await dc.launchRequest({
      ...cfg,
      cwd: '.', relaunchOnSave: false, stopOnEntry: true, hideSystemGoroutines: true, maxStringLen: 200,
      env: {
        API_TOKEN: 't', KLOOP_ROOT: root, CATALOG_FILE: '/etc/orders/catalog.json',
        HTTP_ADDR: `127.0.0.1:${httpPort}`, ADMIN_ADDR: `127.0.0.1:${adminPort}`,
      },
    } as never);
    await initialized;
    const entry = dc.waitForEvent('stopped');
    await dc.configurationDoneRequest();
    // stopOnEntry reached Delve: the program halts before main runs.
    assert.equal((await entry).body.reason, 'entry');
    assert.deepEqual(stderr.filter((l) => /is not one kloop or Delve reads/.test(l)), [], 'every attribute is one the adapter reads');
    await dc.disconnectRequest({ terminateDebuggee: true });
    (dc as unknown as { stopAdapter(): void }).stopAdapter();
    fs.rmSync(root, { recursive: true, force: true });
  });

  test('--listen prints a loopback port that serves one DAP client (nvim-dap "server")', async () => {
    const proc = cp.spawn(kloopBin(), ['dap', '--listen', '127.0.0.1:0'], { env: env.env, cwd: ws.root });
    try {
      const port = await new Promise<number>((resolve, reject) => {
        let out = '';
        const timer = setTimeout(() => reject(new Error(`no "DAP server listening at" in ${out}`)), 10_000);
        const onData = (d: Buffer) => {
          out += d;
          const m = /DAP server listening at: 127\.0\.0\.1:(\d+)/.exec(out);
          if (m) { clearTimeout(timer); resolve(Number(m[1])); }
        };
        proc.stdout.on('data', onData);
        proc.stderr.on('data', onData);
      });
      const client = new DebugClient('unused', 'unused', 'kloop');
      running.push(client);
      await client.start(port);
      const r = await client.initializeRequest();
      assert.equal(r.body?.supportsConfigurationDoneRequest, true);
      await client.disconnectRequest({});
      (client as unknown as { stopAdapter(): void }).stopAdapter();
    } finally {
      proc.kill();
    }
  });
});
