// The bundled extension (dist/extension.js, what the .vsix ships) and its
// manifest.
import { beforeEach, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { maxWorkloadConfigs, resolveLaunch, validateWorkload } from '../../src/logic';
import { dynamicConfigurations } from '../../src/mains';
// eslint-disable-next-line @typescript-eslint/no-require-imports
const stub = require('vscode') as typeof import('./vscode-stub');

const root = path.resolve(__dirname, '..', '..', '..');
const manifest = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
const paletteIds = ['kloop.claim.ui', 'kloop.release.ui', 'kloop.intercept.ui', 'kloop.leave.ui', 'kloop.status.ui', 'kloop.relaunch.ui', 'kloop.env.ui', 'kloop.logs.ui', 'kloop.requests.ui', 'kloop.replay.ui', 'kloop.doctor.ui', 'kloop.export.ui', 'kloop.agent.install.ui', 'kloop.agent.uninstall.ui', 'kloop.workloads.ui', 'kloop.actions', 'kloop.showOutput', 'kloop.restart', 'kloop.install'];

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
  assert.equal(stub.recorded.inputBoxes.length, 0, 'no prompt for a workload kloop cannot intercept');
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

test('the kloop debug type: only program is required; local and cluster snippets pass the extension\'s own checks', () => {
  const dbg = manifest.contributes.debuggers.find((d: { type: string }) => d.type === 'kloop');
  assert.ok(dbg, 'debugger kloop');
  const launch = dbg.configurationAttributes.launch;
  assert.deepEqual(launch.required, ['program']);
  for (const k of ['workload', 'program', 'port', 'header', 'args', 'env', 'buildFlags', 'cwd', 'relaunchOnSave', 'replayOnSave', 'traffic', 'outbound', 'stopOnEntry']) assert.ok(launch.properties[k], k);
  const re = new RegExp(launch.properties.workload.pattern);
  assert.ok(re.test('deployment/orders') && re.test('orders') && !re.test('pod/orders'));
  assert.ok(new RegExp(launch.properties.port.pattern).test('8080:18080'));
  const fill = (s: string) => s.replace(/\$\{\d+:([^}]*)\}/g, '$1').replace(/\$\{workspaceFolderBasename\}/g, 'orders');
  const bodies = [...dbg.initialConfigurations, ...dbg.configurationSnippets.map((s: { body: object }) => s.body)];
  let local = 0;
  let cluster = 0;
  for (const body of bodies) {
    const cfg = JSON.parse(fill(JSON.stringify(body)));
    if (cfg.workload === undefined) local++;
    else {
      cluster++;
      assert.equal(validateWorkload(cfg.workload), undefined, cfg.workload);
    }
    const r = resolveLaunch(cfg, {});
    assert.ok('config' in r, JSON.stringify(r));
  }
  assert.ok(local >= 2, 'a local initial configuration and snippet');
  assert.ok(cluster >= 3, 'cluster initial configuration and snippets');
});

test('kloop: Install kloop runs go install in a terminal, also when kloop is missing', async () => {
  stub.settings['kloop.path'] = '/nonexistent/kloop';
  await loadBundle().activate({ subscriptions: [] });
  await vscode.commands.executeCommand('kloop.install');
  assert.equal(stub.recorded.terminals.length, 1);
  assert.deepEqual(stub.recorded.terminals[0].sent, ['go install github.com/kloop/kloop/cmd/kloop@latest']);
  assert.ok(stub.recorded.terminals[0].shown);
  assert.match(stub.recorded.infos.at(-1) ?? '', /run "kloop: Restart kloop"/);
});

test('changing kloop.path checks the new binary at once, without reloading the window', async () => {
  stub.settings['kloop.path'] = '/nonexistent/kloop';
  await loadBundle().activate({ subscriptions: [] });
  assert.match(stub.recorded.errors[0], /kloop was not found \(\/nonexistent\/kloop\)/);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kloop-path-'));
  const bin = path.join(dir, 'kloop');
  fs.writeFileSync(bin, '#!/bin/sh\necho "kloop v0.0.3"\n', { mode: 0o755 });
  stub.changeSettings({ 'kloop.path': bin });
  // Restarts run one after another: this one ends after the one the change started.
  await vscode.commands.executeCommand('kloop.restart');
  assert.match(stub.recorded.errors[1], /kloop v0\.0\.3 at .* is too old/);
  assert.ok(!stub.recorded.executed.some((e) => e.command === 'workbench.action.reloadWindow'));
  // A setting kloop does not read restarts nothing.
  const before = stub.recorded.errors.length;
  stub.changeSettings({ 'kloop.trace.server': 'off' });
  await vscode.commands.executeCommand('kloop.restart');
  assert.equal(stub.recorded.errors.length, before + 1, 'only the explicit restart checked the binary again');
  fs.rmSync(dir, { recursive: true, force: true });
});

test('Run and Debug lists each main package of the folder as a local kloop debug configuration', async () => {
  stub.settings['kloop.path'] = '/nonexistent/kloop';
  await loadBundle().activate({ subscriptions: [] });
  const dynamic = stub.debug.configProviders.filter((p) => p.type === 'kloop' && p.trigger === stub.DebugConfigurationProviderTriggerKind.Dynamic);
  assert.equal(dynamic.length, 1, 'one dynamic provider for type kloop');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kloop-mains-'));
  const write = (rel: string, text: string) => {
    fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
    fs.writeFileSync(path.join(dir, rel), text);
  };
  const main = 'package main\n\nfunc main() {}\n';
  write('go.mod', 'module example.com/shop\n');
  write('main.go', main);
  write('cmd/orders/main.go', main);
  write('cmd/users/serve.go', 'package main\n\nimport "net/http"\n\nfunc main() { _ = http.ListenAndServe(":80", nil) }\n');
  write('cmd/users/users.go', 'package main\n');
  write('internal/store/store.go', 'package store\n');
  write('tools/gen.go', '//go:build ignore\n\npackage main\n\nfunc main() {}\n');
  write('vendor/example.com/x/main.go', main);
  write('internal/store/testdata/main.go', main);
  write('.git/hooks/main.go', main);
  const configs = await dynamic[0].provider.provideDebugConfigurations({ uri: { fsPath: dir }, name: 'shop' });
  assert.deepEqual(configs.map((c: { program: string }) => c.program), ['.', './cmd/orders', './cmd/users']);
  for (const c of configs) {
    assert.equal(c.type, 'kloop');
    assert.equal(c.request, 'launch');
    assert.equal(c.workload, undefined, 'no workload guessed');
    assert.match(c.name, /^kloop: debug .* locally$/);
    assert.ok('config' in resolveLaunch(c, {}));
  }
  fs.rmSync(dir, { recursive: true, force: true });
});

test('with workloads listed, Run and Debug also offers "debug PACKAGE on WORKLOAD", matching names first', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kloop-mains-'));
  for (const rel of ['cmd/ledger/main.go', 'cmd/orders/main.go']) {
    fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
    fs.writeFileSync(path.join(dir, rel), 'package main\n\nfunc main() {}\n');
  }
  const configs = await dynamicConfigurations(dir, ['deployment/orders', 'statefulset/ledger']);
  assert.deepEqual(configs.map((c) => c.name), [
    'kloop: debug ./cmd/ledger locally',
    'kloop: debug ./cmd/orders locally',
    'kloop: debug ./cmd/ledger on statefulset/ledger',
    'kloop: debug ./cmd/orders on deployment/orders',
    'kloop: debug ./cmd/ledger on deployment/orders',
    'kloop: debug ./cmd/orders on statefulset/ledger',
  ]);
  const onOrders = configs[3];
  assert.deepEqual(onOrders, { type: 'kloop', request: 'launch', name: 'kloop: debug ./cmd/orders on deployment/orders', program: './cmd/orders', workload: 'deployment/orders' });
  const r = resolveLaunch(onOrders, {});
  assert.ok('config' in r && r.config.workload === 'deployment/orders');
  const many = await dynamicConfigurations(dir, Array.from({ length: 40 }, (_, i) => `deployment/w${i}`));
  assert.equal(many.length, 2 + maxWorkloadConfigs, 'the cluster entries are capped');
  fs.rmSync(dir, { recursive: true, force: true });
});

test('.kloop.yaml is validated with the schema kloop generates, shipped in the .vsix', () => {
  const yv = manifest.contributes.yamlValidation;
  assert.ok(Array.isArray(yv) && yv.length === 1, 'one yamlValidation entry');
  assert.ok(yv[0].fileMatch.includes('.kloop.yaml') && yv[0].fileMatch.includes('.kloop.yml'));
  const shipped = path.join(root, yv[0].url);
  assert.ok(fs.existsSync(shipped), `${yv[0].url} is missing: npm run build copies it`);
  const generated = fs.readFileSync(path.join(root, '..', '..', 'config', 'kloop.schema.json'), 'utf8');
  assert.equal(fs.readFileSync(shipped, 'utf8'), generated, 'the copy equals config/kloop.schema.json');
  const ignore = fs.readFileSync(path.join(root, '.vscodeignore'), 'utf8').split('\n');
  assert.ok(ignore.includes('!' + path.posix.normalize(yv[0].url)), '.vscodeignore keeps the schema in the package');
});
