// Checks of the GoLand files, run with `KLOOP_BIN=... node --test extensions/goland/`:
// the XML and JSON are valid, every kloop command and flag they name exists
// (asked of the built binary), the output filters match real build errors,
// and the LSP4IJ templates start a kloop that answers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..', '..');
const bin = process.env.KLOOP_BIN;
assert.ok(bin && fs.existsSync(bin), 'set KLOOP_BIN to a built kloop binary (make test-editors does)');

// ---- a small, strict XML well-formedness checker (no dependencies) --------
function parseXML(text) {
  const root = { children: [] };
  const stack = [root];
  let i = 0;
  const line = () => text.slice(0, i).split('\n').length;
  const fail = (msg) => { throw new Error(`XML line ${line()}: ${msg}`); };
  const checkText = (s) => {
    if (s.includes('<')) fail('bare < in text');
    const bad = s.match(/&(?!(amp|lt|gt|quot|apos|#\d+|#x[0-9a-fA-F]+);)/);
    if (bad) fail(`bare & in ${JSON.stringify(s.slice(0, 40))}`);
  };
  if (text.startsWith('<?xml')) {
    const end = text.indexOf('?>');
    if (end < 0) fail('unterminated XML declaration');
    i = end + 2;
  }
  while (i < text.length) {
    if (text.startsWith('<!--', i)) {
      const end = text.indexOf('-->', i + 4);
      if (end < 0) fail('unterminated comment');
      if (text.slice(i + 4, end).includes('--')) fail('-- inside a comment');
      i = end + 3;
    } else if (text.startsWith('</', i)) {
      const m = /^<\/([A-Za-z_][\w.-]*)\s*>/.exec(text.slice(i));
      if (!m) fail('bad end tag');
      const open = stack.pop();
      if (!open || open.name !== m[1]) fail(`</${m[1]}> closes <${open && open.name}>`);
      i += m[0].length;
    } else if (text[i] === '<') {
      const m = /^<([A-Za-z_][\w.-]*)((?:\s+[A-Za-z_][\w.:-]*\s*=\s*(?:"[^"]*"|'[^']*'))*)\s*(\/?)>/.exec(text.slice(i));
      if (!m) fail(`bad start tag near ${JSON.stringify(text.slice(i, i + 40))}`);
      const attrs = {};
      for (const a of m[2].matchAll(/([A-Za-z_][\w.:-]*)\s*=\s*(?:"([^"]*)"|'([^']*)')/g)) {
        if (a[1] in attrs) fail(`duplicate attribute ${a[1]}`);
        const v = a[2] ?? a[3];
        checkText(v);
        attrs[a[1]] = v.replace(/&quot;/g, '"').replace(/&apos;/g, "'").replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');
      }
      const el = { name: m[1], attrs, children: [] };
      stack[stack.length - 1].children.push(el);
      if (!m[3]) stack.push(el);
      i += m[0].length;
    } else {
      const next = text.indexOf('<', i);
      const s = text.slice(i, next < 0 ? text.length : next);
      checkText(s);
      if (stack.length === 1 && s.trim()) fail('text outside the root element');
      i = next < 0 ? text.length : next;
    }
  }
  if (stack.length !== 1) fail(`<${stack[stack.length - 1].name}> is not closed`);
  if (root.children.length !== 1) fail('want exactly one root element');
  return root.children[0];
}

const kids = (el, name) => el.children.filter((c) => c.name === name);
const option = (el, name) => kids(el, 'option').find((o) => o.attrs.name === name)?.attrs.value;

// ---- what the binary says exists ------------------------------------------
const helpCache = new Map();
function help(sub) {
  const key = sub.join(' ');
  if (!helpCache.has(key)) helpCache.set(key, execFileSync(bin, [...sub, '--help'], { encoding: 'utf8' }));
  return helpCache.get(key);
}
function subcommands() {
  const h = help([]);
  const block = h.split('Available Commands:')[1].split('\n\n')[0];
  return block.split('\n').map((l) => l.trim().split(/\s+/)[0]).filter(Boolean);
}
// assertCommandExists checks `kloop ARGS`: the subcommand and every flag.
function assertCommandExists(args, where) {
  assert.equal(path.basename(args[0]).replace(/\.exe$/, ''), 'kloop', `${where}: runs ${args[0]}`);
  const sub = args[1];
  assert.ok(subcommands().includes(sub), `${where}: kloop ${sub} is not a kloop command (have ${subcommands().join(', ')})`);
  // A nested command (`kloop requests export`) has flags of its own.
  const nested = args[2] && !args[2].startsWith('-') && help([sub]).includes('Available Commands:') &&
    help([sub]).split('Available Commands:')[1].split('\n\n')[0].split('\n').some((l) => l.trim().split(/\s+/)[0] === args[2]);
  const h = nested ? help([sub, args[2]]) : help([sub]);
  for (const a of args.slice(2)) {
    if (!a.startsWith('-')) continue;
    const flag = a.split('=')[0];
    const re = flag.startsWith('--') ? new RegExp(`\\s${flag}\\b`) : new RegExp(`\\s${flag},`);
    assert.match(h, re, `${where}: kloop ${sub} has no flag ${flag}`);
  }
}

// ---- External Tools ---------------------------------------------------------
const toolsXML = fs.readFileSync(path.join(here, 'tools', 'kloop.xml'), 'utf8');

test('tools/kloop.xml is well-formed XML: a toolSet of tools', () => {
  const set = parseXML(toolsXML);
  assert.equal(set.name, 'toolSet');
  assert.equal(set.attrs.name, 'kloop');
  assert.ok(kids(set, 'tool').length >= 6);
  // The checker itself refuses what the IDE would.
  assert.throws(() => parseXML('<a><b></a>'), /closes/);
  assert.throws(() => parseXML('<a x="1 & 2"/>'), /bare &/);
});

test('every External Tool runs a kloop command and flags that exist; claim, release, intercept, leave, status, env are all there', () => {
  const set = parseXML(toolsXML);
  const subs = new Set();
  for (const tool of kids(set, 'tool')) {
    const exec = kids(tool, 'exec')[0];
    assert.ok(exec, `${tool.attrs.name}: no <exec>`);
    const params = option(exec, 'PARAMETERS').split(/\s+/);
    assertCommandExists([option(exec, 'COMMAND'), ...params], `tool "${tool.attrs.name}"`);
    assert.equal(option(exec, 'WORKING_DIRECTORY'), '$ProjectFileDir$');
    assert.ok(tool.attrs.description, `${tool.attrs.name}: description`);
    subs.add(params[0]);
  }
  for (const want of ['claim', 'release', 'intercept', 'leave', 'status', 'env']) assert.ok(subs.has(want), `no tool runs kloop ${want}`);
});

test('the status line tool prints exactly one status line from a real daemon', async (ctx) => {
  const tool = kids(parseXML(toolsXML), 'tool').find((t) => option(kids(t, 'exec')[0], 'PARAMETERS').startsWith('status -o line'));
  assert.ok(tool, 'no tool runs kloop status -o line');
  const ws = fs.mkdtempSync(path.join(os.tmpdir(), 'kloop-gl-status-'));
  fs.writeFileSync(path.join(ws, 'go.mod'), 'module example.com/shop\n\ngo 1.22\n');
  const { dir, env } = privateEnv();
  ctx.after(() => {
    stopDaemons(env);
    fs.rmSync(ws, { recursive: true, force: true });
    try { checkRaces(dir); } finally { fs.rmSync(dir, { recursive: true, force: true }); }
  });
  const params = option(kids(tool, 'exec')[0], 'PARAMETERS').replaceAll('$ProjectFileDir$', ws).split(/\s+/);
  const out = execFileSync(bin, params, { cwd: ws, env, encoding: 'utf8' });
  assert.equal(out, 'kloop: no claim · no intercept\n');
});

test('the GoLand native-debugger route has its tools: intercept with no program, env written to .kloop.env', () => {
  const params = kids(parseXML(toolsXML), 'tool').map((t) => option(kids(t, 'exec')[0], 'PARAMETERS'));
  assert.ok(params.includes('intercept $Prompt$ --detach -w $ProjectFileDir$'), 'no intercept tool without --program');
  assert.ok(params.some((p) => /^env \$Prompt\$ --format dotenv --out \$ProjectFileDir\$\/\.kloop\.env /.test(p)), 'no tool writes .kloop.env');
});

// JetBrains output filter macros -> a regular expression.
function filterRegExp(macro) {
  const esc = macro.replace(/[.*+?^{}()|[\]\\]/g, '\\$&');
  return new RegExp(esc.replace('$FILE_PATH$', '(?<file>[^\\s:]+)').replace('$LINE$', '(?<line>\\d+)').replace('$COLUMN$', '(?<col>\\d+)'));
}

test('the output filters make a real go build error clickable at file:line:col', () => {
  const ws = fs.mkdtempSync(path.join(os.tmpdir(), 'kloop-goland-'));
  fs.writeFileSync(path.join(ws, 'go.mod'), 'module example.com/shop\n\ngo 1.22\n');
  fs.mkdirSync(path.join(ws, 'cmd', 'orders'), { recursive: true });
  const src = fs.readFileSync(path.join(repo, 'test', 'testdata', 'orders', 'main.go'), 'utf8');
  const lines = src.split('\n');
  const at = lines.findIndex((l) => /served\.Add\(1\)/.test(l));
  lines[at] = '\t\tserved.Add(undefinedThing)';
  fs.writeFileSync(path.join(ws, 'cmd', 'orders', 'main.go'), lines.join('\n'));
  let out = '';
  try {
    execFileSync('go', ['build', '-o', os.devNull, './cmd/orders'], { cwd: ws, encoding: 'utf8', stdio: 'pipe' });
  } catch (e) {
    out = `${e.stdout}${e.stderr}`;
  }
  fs.rmSync(ws, { recursive: true, force: true });
  const errLine = out.split('\n').find((l) => l.includes('undefinedThing'));
  assert.ok(errLine, `go build did not report the error: ${out}`);
  for (const tool of kids(parseXML(toolsXML), 'tool')) {
    const filters = kids(tool, 'filter').map((f) => option(f, 'REGEXP'));
    assert.equal(filters[0], '$FILE_PATH$:$LINE$:$COLUMN$', `${tool.attrs.name}: first filter`);
    const m = filterRegExp(filters[0]).exec(errLine);
    assert.ok(m, `${filters[0]} does not match ${errLine}`);
    assert.equal(m.groups.file, 'cmd/orders/main.go');
    assert.equal(Number(m.groups.line), at + 1);
    assert.ok(Number(m.groups.col) > 0);
  }
});

// ---- LSP4IJ templates -------------------------------------------------------
const readJSON = (p) => JSON.parse(fs.readFileSync(path.join(here, p), 'utf8'));

test('every LSP4IJ file is valid JSON', () => {
  const files = [];
  const walk = (d) => fs.readdirSync(d, { withFileTypes: true }).forEach((e) => (e.isDirectory() ? walk(path.join(d, e.name)) : e.name.endsWith('.json') && files.push(path.join(d, e.name))));
  walk(path.join(here, 'lsp4ij'));
  assert.ok(files.length >= 5, files.join(' '));
  for (const f of files) assert.doesNotThrow(() => JSON.parse(fs.readFileSync(f, 'utf8')), f);
});

function readLSP(proc) {
  let buf = Buffer.alloc(0);
  const waiters = [];
  proc.stdout.on('data', (d) => {
    buf = Buffer.concat([buf, d]);
    for (;;) {
      const h = buf.indexOf('\r\n\r\n');
      if (h < 0) return;
      const n = Number(/Content-Length: (\d+)/i.exec(buf.slice(0, h).toString())[1]);
      if (buf.length < h + 4 + n) return;
      const msg = JSON.parse(buf.slice(h + 4, h + 4 + n).toString());
      buf = buf.slice(h + 4 + n);
      waiters.splice(0).forEach((w) => w(msg));
      messages.push(msg);
    }
  });
  const messages = [];
  return {
    messages,
    next: (pred) => new Promise((resolve) => {
      const found = messages.find(pred);
      if (found) return resolve(found);
      const check = (m) => (pred(m) ? resolve(m) : waiters.push(check));
      waiters.push(check);
    }),
  };
}
const frame = (o) => { const b = JSON.stringify(o); return `Content-Length: ${Buffer.byteLength(b)}\r\n\r\n${b}`; };

// stopDaemons ends the daemons a test's kloop started on its private socket
// (`kloop lsp` and `kloop dap` with a workload start one on demand).
function stopDaemons(env) {
  try { execFileSync(bin, ['daemon', 'stop'], { env, stdio: 'ignore' }); } catch { /* none running */ }
  for (const pid of fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const args = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      if (args[1] !== 'daemon') continue;
      if (fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').includes(`KLOOP_SOCKET=${env.KLOOP_SOCKET}`)) process.kill(Number(pid), 'SIGKILL');
    } catch { /* gone */ }
  }
}

function privateEnv() {
  const dir = fs.mkdtempSync('/tmp/kloop-gl-');
  // KUBECONFIG points nowhere: a test never reaches a real cluster. A -race
  // kloop (make test-editors builds one), and every kloop it starts, writes
  // its race reports to ${dir}/race.PID (checkRaces reads them).
  const gorace = `${process.env.GORACE ?? ''} log_path=${dir}/race`.trim();
  return { dir, env: { ...process.env, KLOOP_SOCKET: `${dir}/d/daemon.sock`, KLOOP_STATE_DIR: `${dir}/state`, KUBECONFIG: `${dir}/no-kubeconfig`, GORACE: gorace } };
}

// checkRaces throws, failing the test whose after hook calls it, with every
// race report of a privateEnv's kloop processes: the GORACE log files and the
// daemon's logs (where a daemon with a GORACE of its own prints them).
function checkRaces(dir) {
  const found = [];
  for (const [d, re] of [[dir, /^race\.\d+$/], [`${dir}/state`, /^daemon\.log/]]) {
    let names = [];
    try { names = fs.readdirSync(d); } catch { continue; } // none written
    for (const f of names.filter((n) => re.test(n)).sort()) {
      const text = fs.readFileSync(path.join(d, f), 'utf8');
      const i = text.indexOf('WARNING: DATA RACE');
      if (i >= 0) found.push(`${f}:\n${text.slice(i)}`);
    }
  }
  if (found.length) throw new Error(`a kloop process reported a data race:\n${found.join('\n')}`);
}

test('the language server template starts `kloop lsp`, which initializes for Go and YAML', async (ctx) => {
  const t = readJSON('lsp4ij/lsp/kloop/template.json');
  assert.equal(t.id, 'kloop');
  const args = t.programArgs.default.split(/\s+/);
  assertCommandExists(args, 'template.json programArgs');
  assertCommandExists(t.programArgs.windows.split(/\s+/), 'template.json programArgs.windows');
  assert.deepEqual(t.fileTypeMappings.map((m) => m.languageId).sort(), ['go', 'yaml']);
  const inst = readJSON('lsp4ij/lsp/kloop/installer.json');
  assertCommandExists(inst.check.exec.command.default.split(/\s+/), 'installer.json check');
  assertCommandExists(inst.run.exec.onSuccess.configureServer.command.split(/\s+/), 'installer.json configureServer');

  const { dir, env } = privateEnv();
  ctx.after(() => {
    stopDaemons(env);
    try { checkRaces(dir); } finally { fs.rmSync(dir, { recursive: true, force: true }); }
  });
  const proc = spawn(bin, args.slice(1), { env, cwd: repo });
  const rd = readLSP(proc);
  proc.stdin.write(frame({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { processId: null, rootUri: `file://${repo}`, capabilities: {} } }));
  const res = await rd.next((m) => m.id === 1);
  assert.equal(res.result.serverInfo.name, 'kloop');
  assert.ok(res.result.capabilities.codeLensProvider);
  proc.stdin.write(frame({ jsonrpc: '2.0', id: 2, method: 'shutdown' }));
  await rd.next((m) => m.id === 2);
  proc.stdin.write(frame({ jsonrpc: '2.0', method: 'exit' }));
  await new Promise((r) => proc.on('exit', r));
});

test('the debug adapter template starts `kloop dap --listen`, its ready pattern finds the port, and its launch configurations are answered', async (ctx) => {
  const t = readJSON('lsp4ij/dap/kloop/template.json');
  const args = t.launch.default.split(/\s+/);
  assertCommandExists(args, 'dap template.json launch');
  assertCommandExists(t.launch.windows.split(/\s+/), 'dap template.json launch.windows');
  const ready = new RegExp(t.debugServerReadyPattern.split(/(\$\{address\}|\$\{port\})/).map((part) => (
    part === '${address}' ? '(?<address>[\\w.:\\[\\]-]+?)' : part === '${port}' ? '(?<port>\\d+)' : part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))).join(''));

  const ws = fs.mkdtempSync(path.join(os.tmpdir(), 'kloop-gl-ws-'));
  fs.writeFileSync(path.join(ws, 'go.mod'), 'module example.com/shop\n\ngo 1.22\n');
  fs.mkdirSync(path.join(ws, 'cmd', 'orders'), { recursive: true });
  fs.copyFileSync(path.join(repo, 'test', 'testdata', 'orders', 'main.go'), path.join(ws, 'cmd', 'orders', 'main.go'));
  const { dir, env } = privateEnv();
  ctx.after(() => {
    stopDaemons(env);
    fs.rmSync(ws, { recursive: true, force: true });
    try { checkRaces(dir); } finally { fs.rmSync(dir, { recursive: true, force: true }); }
  });

  async function session(configFile) {
    const proc = spawn(bin, args.slice(1), { env, cwd: ws });
    let printed = '';
    const addr = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`ready pattern ${ready} never matched: ${printed}`)), 10000);
      const on = (d) => { printed += d; const m = ready.exec(printed); if (m) { clearTimeout(timer); resolve(m.groups); } };
      proc.stdout.on('data', on);
      proc.stderr.on('data', on);
    });
    assert.equal(addr.address, '127.0.0.1');
    const sock = net.connect(Number(addr.port), addr.address);
    await new Promise((r) => sock.on('connect', r));
    const rd = readLSP({ stdout: sock });
    sock.write(frame({ seq: 1, type: 'request', command: 'initialize', arguments: { adapterID: 'kloop', clientID: 'lsp4ij', linesStartAt1: true, columnsStartAt1: true, pathFormat: 'path' } }));
    const init = await rd.next((m) => m.type === 'response' && m.request_seq === 1);
    assert.equal(init.success, true);
    const cfg = JSON.parse(fs.readFileSync(path.join(here, 'lsp4ij', 'dap', 'kloop', configFile), 'utf8').replaceAll('${workspaceFolder}', ws));
    assert.equal(cfg.type, 'kloop');
    assert.equal(cfg.request, 'launch');
    sock.write(frame({ seq: 2, type: 'request', command: 'launch', arguments: cfg }));
    const launched = await rd.next((m) => m.type === 'response' && m.request_seq === 2);
    sock.write(frame({ seq: 3, type: 'request', command: 'disconnect', arguments: { terminateDebuggee: true } }));
    await rd.next((m) => m.type === 'response' && m.request_seq === 3);
    sock.destroy();
    await new Promise((r) => { proc.on('exit', r); setTimeout(() => { proc.kill(); }, 5000); });
    return { cfg, launched };
  }

  const local = await session('launch.local.json');
  assert.equal(local.launched.success, true, `local debug launch: ${JSON.stringify(local.launched)}`);
  const cluster = await session('launch.json');
  assert.equal(cluster.launched.success, false, 'no intercept exists in a fresh daemon');
  assert.match(cluster.launched.message, /orders/, 'the failure names the workload');
});
