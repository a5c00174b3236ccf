// Shared set-up for the integration suites: the real kloop binary, a private
// daemon per test (KLOOP_SOCKET / KLOOP_STATE_DIR), and a workspace holding
// the sample orders service from test/testdata.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export function kloopBin(): string {
  const bin = process.env.KLOOP_BIN;
  assert.ok(bin, 'set KLOOP_BIN to a built kloop binary (make test-editors does: go build -o $KLOOP_BIN ./cmd/kloop)');
  assert.ok(fs.existsSync(bin), `KLOOP_BIN=${bin} does not exist`);
  return path.resolve(bin);
}

/** repoRoot walks up from here to the kloop checkout (it has test/testdata). */
export function repoRoot(): string {
  let dir = __dirname;
  for (;;) {
    if (fs.existsSync(path.join(dir, 'test', 'testdata', 'orders', 'main.go')) && fs.existsSync(path.join(dir, 'go.mod'))) return dir;
    const up = path.dirname(dir);
    assert.notEqual(up, dir, 'kloop checkout with test/testdata/orders not found above ' + __dirname);
    dir = up;
  }
}

export interface Env {
  env: NodeJS.ProcessEnv;
  dir: string;
  cleanup(): void;
}

/**
 * privateEnv gives kloop its own daemon socket and state directory. Its
 * cleanup throws (failing the suite whose hook calls it) when a kloop
 * process of the env reported a data race: `make test-editors` builds
 * KLOOP_BIN with -race.
 */
export function privateEnv(): Env {
  // Unix socket paths are short: keep it directly under /tmp.
  const dir = fs.mkdtempSync(path.join('/tmp', 'kloop-vsc-'));
  // KUBECONFIG points nowhere: a test never reaches a real cluster.
  const env = {
    ...process.env,
    KLOOP_SOCKET: path.join(dir, 'd', 'daemon.sock'),
    KLOOP_STATE_DIR: path.join(dir, 'state'),
    KUBECONFIG: path.join(dir, 'no-kubeconfig'),
    // A -race kloop (and every kloop it starts: the daemon, the debug
    // worker) writes its reports to dir/race.PID, not to a stderr the test
    // may not read.
    GORACE: `${process.env.GORACE ?? ''} log_path=${path.join(dir, 'race')}`.trim(),
  };
  return {
    env,
    dir,
    cleanup() {
      stopDaemons(env.KLOOP_SOCKET!);
      const races = raceReports(dir);
      fs.rmSync(dir, { recursive: true, force: true });
      if (races) throw new Error(`a kloop process reported a data race:\n${races}`);
    },
  };
}

const RACE = 'WARNING: DATA RACE';

/** reportsIn returns the race reports in text, each up to the separator line that ends it. */
export function reportsIn(text: string): string {
  const out: string[] = [];
  for (let i = text.indexOf(RACE); i >= 0; i = text.indexOf(RACE, i + RACE.length)) {
    const end = text.indexOf('\n==================', i);
    out.push(end < 0 ? text.slice(i) : text.slice(i, end + 1));
  }
  return out.join('\n');
}

/**
 * raceReports collects the race reports of a privateEnv's processes: the
 * GORACE log files dir/race.PID, and the daemon's log (where a daemon
 * started with a GORACE of its own would print them).
 */
export function raceReports(dir: string): string {
  const found: string[] = [];
  const scan = (d: string, re: RegExp, what: (f: string) => string) => {
    let names: string[] = [];
    try { names = fs.readdirSync(d); } catch { return; } // none written
    for (const f of names.filter((n) => re.test(n)).sort()) {
      const r = reportsIn(fs.readFileSync(path.join(d, f), 'utf8'));
      if (r) found.push(`${what(f)}:\n${r}`);
    }
  };
  scan(dir, /^race\.\d+$/, (f) => `process ${f.slice('race.'.length)}`);
  scan(path.join(dir, 'state'), /^daemon\.log/, (f) => `the daemon (${f})`);
  return found.join('\n');
}

/** stopDaemons kills the `kloop daemon` processes of one private socket. */
export function stopDaemons(socket: string): void {
  for (const ent of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(ent)) continue;
    try {
      const args = fs.readFileSync(`/proc/${ent}/cmdline`, 'utf8').split('\0');
      if (args[1] !== 'daemon') continue;
      const environ = fs.readFileSync(`/proc/${ent}/environ`, 'utf8');
      if (environ.split('\0').includes(`KLOOP_SOCKET=${socket}`)) process.kill(Number(ent), 'SIGKILL');
    } catch {
      // gone already
    }
  }
}

/**
 * ordersWorkspace copies the sample orders service into a fresh module, as
 * a user's repository would hold it: cmd/orders/main.go and a manifest.
 */
export function ordersWorkspace(): { root: string; main: string; manifest: string } {
  const src = path.join(repoRoot(), 'test', 'testdata');
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'kloop-ws-'));
  fs.writeFileSync(path.join(root, 'go.mod'), 'module example.com/shop\n\ngo 1.22\n');
  const main = path.join(root, 'cmd', 'orders', 'main.go');
  fs.mkdirSync(path.dirname(main), { recursive: true });
  fs.copyFileSync(path.join(src, 'orders', 'main.go'), main);
  const manifest = path.join(root, 'deploy', 'orders.yaml');
  fs.mkdirSync(path.dirname(manifest), { recursive: true });
  fs.copyFileSync(path.join(src, 'orders.yaml'), manifest);
  return { root, main, manifest };
}

/** lineOf is the 0-based line of the first line of text matching re. */
export function lineOf(file: string, re: RegExp): number {
  const i = fs.readFileSync(file, 'utf8').split('\n').findIndex((l) => re.test(l));
  assert.ok(i >= 0, `${re} not in ${file}`);
  return i;
}
