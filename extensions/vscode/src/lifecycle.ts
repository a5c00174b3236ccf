// The language client's lifecycle: start, "kloop: Restart kloop", and a
// changed kloop.path or kloop.standalone, all without reloading the window.
// No `vscode` import: unit tests drive it with fake clients.
import { VersionVerdict } from './logic';

/** The part of vscode-languageclient's LanguageClient the manager drives. */
export interface ManagedClient {
  start(): Promise<void>;
  stop(): Promise<void>;
  sendRequest(method: string, params: unknown): Promise<unknown>;
}

export interface ClientManagerDeps<C extends ManagedClient> {
  /** binary is the kloop the settings name now. */
  binary(): string;
  probe(binary: string): Promise<VersionVerdict>;
  /** create makes a client that spawns binary; it is not started yet. */
  create(binary: string): C;
  log(line: string): void;
  /**
   * problem tells the user why no kloop runs: the binary is missing, too old
   * or not kloop ('binary'), or `kloop lsp` would not start ('start').
   */
  problem(message: string, kind: 'binary' | 'start'): void;
}

/** Settings whose change restarts the client. */
export const restartSettings = ['kloop.path', 'kloop.standalone'];

export class ClientManager<C extends ManagedClient> {
  client: C | undefined;
  /** The binary the running client spawned; debug sessions use the same. */
  binaryInUse: string | undefined;
  /** Why no client runs, as the user reads it; undefined while one does. */
  problem: string | undefined;
  private queue: Promise<void> = Promise.resolve();

  constructor(private readonly deps: ClientManagerDeps<C>) {}

  /**
   * restart stops the running client (if any), checks the binary the
   * settings name now and starts a client on it. Calls run one after
   * another, so a burst of settings changes ends with the last one's
   * binary and never two clients.
   */
  restart(): Promise<void> {
    const next = this.queue.then(() => this.cycle());
    this.queue = next.catch(() => undefined);
    return next;
  }

  /** affects says whether a configuration change needs a restart. */
  affects(e: { affectsConfiguration(section: string): boolean }): boolean {
    return restartSettings.some((s) => e.affectsConfiguration(s));
  }

  /** sendRequest goes to the running client, or fails with why there is none. */
  sendRequest(method: string, params: unknown): Promise<unknown> {
    if (!this.client) return Promise.reject(new Error(this.problem ?? 'kloop is starting; try again in a moment'));
    return this.client.sendRequest(method, params);
  }

  stop(): Promise<void> {
    const next = this.queue.then(() => this.stopClient());
    this.queue = next.catch(() => undefined);
    return next;
  }

  private async stopClient(): Promise<void> {
    const old = this.client;
    this.client = undefined;
    this.binaryInUse = undefined;
    if (!old) return;
    try {
      await old.stop();
    } catch (err) {
      // A client that never started (or already died) has nothing to stop.
      this.deps.log(`stopping kloop lsp: ${(err as Error)?.message ?? err}`);
    }
  }

  private async cycle(): Promise<void> {
    await this.stopClient();
    const binary = this.deps.binary();
    const verdict = await this.deps.probe(binary);
    if (!verdict.ok) {
      this.fail(verdict.message, 'binary');
      return;
    }
    this.deps.log(`Using kloop ${verdict.version} at ${binary}`);
    const c = this.deps.create(binary);
    try {
      await c.start();
    } catch (err) {
      try {
        await c.stop();
      } catch {
        // It did not start, so there is nothing to stop.
      }
      this.fail(`kloop lsp did not start: ${(err as Error)?.message ?? err}`, 'start');
      return;
    }
    this.client = c;
    this.binaryInUse = binary;
    this.problem = undefined;
  }

  private fail(message: string, kind: 'binary' | 'start'): void {
    this.problem = message;
    this.deps.log(message);
    this.deps.problem(message, kind);
  }
}
