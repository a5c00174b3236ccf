// Finding and checking the kloop binary before the language client starts.
import { execFile } from 'node:child_process';
import { checkVersion, missingBinaryMessage, VersionVerdict } from './logic';

/** probeBinary runs `kloop version` and judges the answer. */
export function probeBinary(binary: string, timeoutMs = 10_000): Promise<VersionVerdict> {
  return new Promise((resolve) => {
    execFile(binary, ['version'], { timeout: timeoutMs }, (err, stdout, stderr) => {
      if (err && (err as NodeJS.ErrnoException).code && typeof (err as NodeJS.ErrnoException).code === 'string') {
        resolve({ ok: false, message: missingBinaryMessage(binary, err as NodeJS.ErrnoException) });
        return;
      }
      if (err) {
        // It ran but failed: a kloop without a `version` command is too old.
        const out = `${stdout}${stderr}`.trim();
        resolve({
          ok: false,
          message: /unknown command "version"/.test(out)
            ? `kloop at ${binary} is too old: it has no \`version\` command. Update kloop or set "kloop.path".`
            : `\`${binary} version\` failed: ${out.slice(0, 200) || err.message}. Check "kloop.path".`,
        });
        return;
      }
      resolve(checkVersion(stdout, binary));
    });
  });
}
