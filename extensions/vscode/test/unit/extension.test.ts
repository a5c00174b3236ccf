// The bundled extension (dist/extension.js, what the .vsix ships) and its
// manifest.
import { beforeEach, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { resolveLaunch, validateWorkload } from '../../src/logic';
// eslint-disable-next-line @typescript-eslint/no-require-imports
const stub = require('vscode') as typeof import('./vscode-stub');

const root = path.resolve(__dirname, '..', '..', '..');
const manifest = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
const paletteIds = ['kloop.claim.ui', 'kloop.release.ui', 'kloop.intercept.ui', 'kloop.leave.ui', 'kloop.status.ui', 'kloop.relaunch.ui', 'kloop.env.ui', 'kloop.logs.ui', 'kloop.requests.ui', 'kloop.replay.ui', 'kloop.doctor.ui', 'kloop.export.ui', 'kloop.agent.install.ui', 'kloop.agent.uninstall.ui', 'kloop.actions', 'kloop.showOutput'];

function loadBundle(): { activate(ctx: { subscriptions: unknown[] }): Promise<void> } {
  const file = path.join(root, manifest.main);
  assert.ok(fs.existsSync(file), `${manifest.main} is missing: run npm run build`);
  delete require.cache[require.resolve(file)];
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require(file);
}

beforeEach(() => {
  stub.reset();
  for (const k of Object.keys(stub.settings)) delete stub.settings[k];
});

test('with kloop missing, activation says so and every kloop command repeats it', async () => {
  stub.settings['kloop.path'] = '/nonexistent/kloop';
  const ctx = { subscriptions: [] as unknown[] };
  await loadBundle().activate(ctx);
  const want = 'kloop was not found (/nonexistent/kloop). Install it (go install github.com/kloop/kloop/cmd/kloop@latest) or set "kloop.path" to the binary.';
  assert.deepEqual(stub.recorded.errors, [want]);
  await vscode.commands.executeCommand('kloop.intercept.ui');
  assert.deepEqual(stub.recorded.errors, [want, want]);
  const ids = (vscode.commands as unknown as { registered(): string[] }).registered();
  assert.deepEqual(ids.sort(), [...paletteIds].sort());
});

test('with a kloop that is too old, activation names the version and the minimum', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kloop-old-'));
  const bin = path.join(dir, 'kloop');
  fs.writeFileSync(bin, '#!/bin/sh\necho "kloop v0.0.3"\n', { mode: 0o755 });
  stub.settings['kloop.path'] = bin;
  await loadBundle().activate({ subscriptions: [] });
  assert.equal(stub.recorded.errors.length, 1);
  assert.match(stub.recorded.errors[0], /kloop v0\.0\.3 at .* is too old: this extension needs kloop 0\.1\.0 or later/);
  fs.rmSync(dir, { recursive: true, force: true });
});

test('the manifest contributes every palette command and activates on Go and .kloop.yaml', () => {
  const contributed = manifest.contributes.commands.map((c: { command: string }) => c.command);
  assert.deepEqual([...contributed].sort(), [...paletteIds].sort());
  for (const c of manifest.contributes.commands) assert.equal(c.category, 'kloop');
  assert.ok(manifest.activationEvents.includes('onLanguage:go'));
  assert.ok(manifest.activationEvents.includes('workspaceContains:.kloop.yaml'));
  assert.equal(manifest.contributes.configuration.properties['kloop.path'].default, 'kloop');
  assert.equal(manifest.main, './dist/extension.js');
});

test('the kloop debug type: schema requires workload and program; every snippet passes the extension\'s own checks', () => {
  const dbg = manifest.contributes.debuggers.find((d: { type: string }) => d.type === 'kloop');
  assert.ok(dbg, 'debugger kloop');
  const launch = dbg.configurationAttributes.launch;
  assert.deepEqual(launch.required, ['workload', 'program']);
  for (const k of ['workload', 'program', 'port', 'header', 'args', 'env', 'buildFlags']) assert.ok(launch.properties[k], k);
  const re = new RegExp(launch.properties.workload.pattern);
  assert.ok(re.test('deployment/orders') && re.test('orders') && !re.test('pod/orders'));
  assert.ok(new RegExp(launch.properties.port.pattern).test('8080:18080'));
  const fill = (s: string) => s.replace(/\$\{\d+:([^}]*)\}/g, '$1').replace(/\$\{workspaceFolderBasename\}/g, 'orders');
  const bodies = [...dbg.initialConfigurations, ...dbg.configurationSnippets.map((s: { body: object }) => s.body)];
  assert.ok(bodies.length >= 3);
  for (const body of bodies) {
    const cfg = JSON.parse(fill(JSON.stringify(body)));
    assert.equal(validateWorkload(cfg.workload), undefined, cfg.workload);
    const r = resolveLaunch(cfg, {});
    assert.ok('config' in r, JSON.stringify(r));
  }
});
