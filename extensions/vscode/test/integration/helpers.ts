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

/** privateEnv gives kloop its own daemon socket and state directory. */
export function privateEnv(): Env {
  // Unix socket paths are short: keep it directly under /tmp.
  const dir = fs.mkdtempSync(path.join('/tmp', 'kloop-vsc-'));
  // KUBECONFIG points nowhere: a test never reaches a real cluster.
  const env = {
    ...process.env,
    KLOOP_SOCKET: path.join(dir, 'd', 'daemon.sock'),
    KLOOP_STATE_DIR: path.join(dir, 'state'),
    KUBECONFIG: path.join(dir, 'no-kubeconfig'),
  };
  return {
    env,
    dir,
    cleanup() {
      stopDaemons(env.KLOOP_SOCKET!);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
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
