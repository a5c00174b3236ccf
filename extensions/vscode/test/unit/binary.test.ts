import { after, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { probeBinary } from '../../src/binary';

const dirs: string[] = [];
after(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

function script(body: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kloop-vsc-unit-'));
  dirs.push(dir);
  const p = path.join(dir, 'kloop');
  fs.writeFileSync(p, `#!/bin/sh\n${body}\n`, { mode: 0o755 });
  return p;
}

test('probe: a missing binary is reported with the setting to change', async () => {
  const v = await probeBinary('/nonexistent/kloop');
  assert.equal(v.ok, false);
  assert.match((v as { message: string }).message, /kloop was not found \(\/nonexistent\/kloop\).*"kloop\.path"/);
});

test('probe: an old kloop is refused with its version', async () => {
  const v = await probeBinary(script('echo "kloop v0.0.5"'));
  assert.equal(v.ok, false);
  assert.match((v as { message: string }).message, /kloop v0\.0\.5 at .* is too old/);
});

test('probe: a kloop without a version command is too old', async () => {
  const v = await probeBinary(script('echo \'Error: unknown command "version" for "kloop"\' >&2; exit 1'));
  assert.equal(v.ok, false);
  assert.match((v as { message: string }).message, /too old: it has no `version` command/);
});
