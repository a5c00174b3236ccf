// Finding the Go main packages of a workspace folder for the debug
// configurations VS Code lists under "kloop…" in Run and Debug. No `vscode`
// import, so unit tests run it on real directories.
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { LaunchConfig, goMainOf, workloadConfigurations } from './logic';

/** Directories the go tool ignores, and big ones no main package lives in. */
function skipDir(name: string): boolean {
  return name.startsWith('.') || name.startsWith('_') || name === 'vendor' || name === 'testdata' || name === 'node_modules';
}

/** A file the go tool leaves out of every build (generators' `//go:build ignore`). */
function ignoredByBuild(text: string): boolean {
  const head = text.slice(0, text.search(/^package\s/m) >>> 0);
  return /^\/\/go:build\s+ignore\s*$/m.test(head) || /^\/\/\s*\+build\s+ignore\s*$/m.test(head);
}

/**
 * findMainPackages lists the main packages under root as ./relative
 * directories, sorted. It stops after maxDirs directories so a huge folder
 * cannot stall the Run and Debug view.
 */
export async function findMainPackages(root: string, maxDirs = 5000): Promise<string[]> {
  const found: string[] = [];
  const queue = [root];
  let seen = 0;
  while (queue.length > 0 && seen < maxDirs) {
    const dir = queue.shift()!;
    seen++;
    let entries;
    try {
      entries = await fs.readdir(dir, { withFileTypes: true });
    } catch {
      continue; // unreadable: nothing to offer there
    }
    let isMain = false;
    for (const e of entries) {
      if (e.isDirectory()) {
        if (!skipDir(e.name)) queue.push(path.join(dir, e.name));
        continue;
      }
      if (isMain || !e.isFile() || !e.name.endsWith('.go') || e.name.endsWith('_test.go')) continue;
      let text: string;
      try {
        text = await fs.readFile(path.join(dir, e.name), 'utf8');
      } catch {
        continue;
      }
      if (!ignoredByBuild(text) && goMainOf(text, '.')) isMain = true;
    }
    if (isMain) {
      const rel = path.relative(root, dir).split(path.sep).join('/');
      found.push(rel === '' ? '.' : `./${rel}`);
    }
  }
  return found.sort();
}

/**
 * dynamicConfigurations are the launch configurations offered without a
 * launch.json: one local debug session per main package, then "debug
 * PACKAGE on WORKLOAD" for the workloads kloop.workloads listed (none when
 * that call failed: the local ones still help).
 */
export async function dynamicConfigurations(root: string, workloads: string[] = []): Promise<LaunchConfig[]> {
  const programs = await findMainPackages(root);
  const local: LaunchConfig[] = programs.map((program) => ({
    type: 'kloop',
    request: 'launch',
    name: `kloop: debug ${program} locally`,
    program,
  }));
  return [...local, ...workloadConfigurations(programs, workloads)];
}
