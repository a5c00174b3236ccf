import * as esbuild from 'esbuild';
import * as fs from 'node:fs';

// The .kloop.yaml schema is generated in config/ (go generate ./config); the
// extension ships a copy for yamlValidation, refreshed on every build so the
// .vsix never carries a stale one.
fs.mkdirSync('schema', { recursive: true });
fs.copyFileSync('../../config/kloop.schema.json', 'schema/kloop.schema.json');

const production = process.argv.includes('--production');
await esbuild.build({
  entryPoints: ['src/extension.ts'],
  bundle: true,
  outfile: 'dist/extension.js',
  external: ['vscode'],
  format: 'cjs',
  platform: 'node',
  target: 'node20',
  sourcemap: !production,
  minify: production,
  logLevel: 'warning',
});
