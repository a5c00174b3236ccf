// Preloaded with `node --require`: makes require('vscode') load the stub.
import Module = require('node:module');
import * as path from 'node:path';

const stub = path.join(__dirname, 'vscode-proxy.js');
const m = Module as unknown as { _resolveFilename: (req: string, ...rest: unknown[]) => string };
const orig = m._resolveFilename;
m._resolveFilename = function (request: string, ...rest: unknown[]) {
  if (request === 'vscode') return stub;
  return orig.call(this, request, ...rest);
};
