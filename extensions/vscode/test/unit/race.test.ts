// The integration suites' race check (helpers.ts): what it finds must be what
// a -race kloop writes, or a race in the daemon would pass unnoticed.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { raceReports, reportsIn } from '../integration/helpers';

const report = [
  'WARNING: DATA RACE',
  'Write at 0x00c000012345 by goroutine 7:',
  '  github.com/kloop/kloop/server.(*Daemon).serve()',
  '      /src/server/daemon.go:120 +0x44',
  '',
].join('\n');
const printed = `==================\n${report}==================\n`;

test('reportsIn finds each report up to its closing separator, and nothing in clean output', () => {
  assert.equal(reportsIn('listening\nstopped\n'), '');
  assert.equal(reportsIn(`started\n${printed}more\n`), report);
  const two = reportsIn(`${printed}between\n${printed.replace('goroutine 7', 'goroutine 9')}`);
  assert.equal(two.split('WARNING: DATA RACE').length - 1, 2);
  assert.ok(two.includes('goroutine 9') && !two.includes('between'), two);
  // A process killed mid-report: everything from the marker on.
  assert.equal(reportsIn('x\nWARNING: DATA RACE\nWrite at'), 'WARNING: DATA RACE\nWrite at');
});

test('raceReports reads the GORACE log files and the daemon logs of a private env', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kloop-race-unit-'));
  try {
    fs.mkdirSync(path.join(dir, 'state'));
    fs.writeFileSync(path.join(dir, 'state', 'daemon.log'), 'daemon started\n');
    assert.equal(raceReports(dir), '');
    fs.writeFileSync(path.join(dir, 'race.4242'), printed);
    fs.writeFileSync(path.join(dir, 'state', 'daemon.log.1'), `old\n${printed}`);
    const found = raceReports(dir);
    assert.match(found, /^process 4242:\nWARNING: DATA RACE/);
    assert.match(found, /the daemon \(daemon\.log\.1\):\nWARNING: DATA RACE/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
