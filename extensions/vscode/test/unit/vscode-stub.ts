// A stand-in for the `vscode` module: records what the extension shows and
// answers prompts from a script the test sets.
/* eslint-disable @typescript-eslint/no-explicit-any */

export const recorded = {
  errors: [] as string[],
  infos: [] as string[],
  warnings: [] as string[],
  executed: [] as Array<{ command: string; args: unknown[] }>,
  clipboard: '',
  quickPicks: [] as Array<{ items: any[]; options: any }>,
  inputBoxes: [] as any[],
  shownDocuments: [] as Uri[],
  terminals: [] as Array<{ name: string; sent: string[]; shown: boolean }>,
};

/** providers are the TextDocumentContentProviders registered, by scheme. */
export const providers = new Map<string, { provideTextDocumentContent(uri: Uri): string }>();

export class Uri {
  constructor(public scheme: string, public path: string) {}
  get fsPath() { return this.path; }
  static from(c: { scheme: string; path: string }) { return new Uri(c.scheme, c.path); }
  static file(p: string) { return new Uri('file', p); }
  toString() { return `${this.scheme}:${this.path}`; }
}

/** answers pops one scripted answer per prompt (input box, quick pick, message). */
export const answers: unknown[] = [];

export function reset(): void {
  recorded.errors = [];
  recorded.infos = [];
  recorded.warnings = [];
  recorded.executed = [];
  recorded.clipboard = '';
  recorded.quickPicks = [];
  recorded.inputBoxes = [];
  recorded.shownDocuments = [];
  recorded.terminals = [];
  providers.clear();
  configListeners.length = 0;
  debug.configProviders = [];
  debug.adapterFactories = [];
  answers.length = 0;
  registered.clear();
  debug.started = [];
}

const registered = new Map<string, (...a: unknown[]) => unknown>();

export class ThemeColor {
  constructor(public id: string) {}
}

export enum StatusBarAlignment {
  Left = 1,
  Right = 2,
}

class StatusBarItem {
  text = '';
  tooltip: string | undefined;
  command: string | undefined;
  name: string | undefined;
  backgroundColor: ThemeColor | undefined;
  visible = false;
  constructor(public id: string) {}
  show() { this.visible = true; }
  hide() { this.visible = false; }
  dispose() { this.visible = false; }
}

class OutputChannel {
  lines: string[] = [];
  shown = false;
  constructor(public name: string) {}
  appendLine(s: string) { this.lines.push(s); }
  append(s: string) { this.lines.push(s); }
  show() { this.shown = true; }
  dispose() {}
}

export const window = {
  activeTextEditor: undefined as unknown,
  createTerminal: (opts: { name: string }) => {
    const t = { name: opts.name, sent: [] as string[], shown: false };
    recorded.terminals.push(t);
    return { show: () => { t.shown = true; }, sendText: (s: string) => { t.sent.push(s); }, dispose() {} };
  },
  showTextDocument: async (uri: Uri) => { recorded.shownDocuments.push(uri); return undefined; },
  createStatusBarItem: (id: string) => new StatusBarItem(id),
  createOutputChannel: (name: string) => new OutputChannel(name),
  showErrorMessage: async (msg: string, ..._items: unknown[]) => { recorded.errors.push(msg); return undefined; },
  showInformationMessage: async (msg: string) => { recorded.infos.push(msg); return undefined; },
  showWarningMessage: async (msg: string, ..._rest: unknown[]) => { recorded.warnings.push(msg); return answers.shift(); },
  showInputBox: async (opts: any) => {
    recorded.inputBoxes.push(opts);
    const a = answers.shift() as string | undefined;
    if (a !== undefined && opts?.validateInput) {
      const bad = opts.validateInput(a);
      if (bad) throw new Error(`input ${JSON.stringify(a)} rejected: ${bad}`);
    }
    return a;
  },
  showQuickPick: async (items: any[], options: any) => {
    recorded.quickPicks.push({ items, options });
    const want = answers.shift();
    if (want === undefined) return undefined;
    return items.find((i) => i.label === want || i.command === want);
  },
};

export const commands = {
  registerCommand(id: string, fn: (...a: unknown[]) => unknown) {
    registered.set(id, fn);
    return { dispose: () => registered.delete(id) };
  },
  async executeCommand(id: string, ...args: unknown[]) {
    recorded.executed.push({ command: id, args });
    const fn = registered.get(id);
    return fn ? fn(...args) : undefined;
  },
  registered: () => [...registered.keys()],
};

export const env = {
  clipboard: {
    writeText: async (s: string) => { recorded.clipboard = s; },
    readText: async () => recorded.clipboard,
  },
};

/** settings answers workspace.getConfiguration('kloop').get(key). */
export const settings: Record<string, unknown> = {};

export const workspace = {
  workspaceFolders: undefined as unknown as Array<{ uri: { fsPath: string }; name: string }> | undefined,
  getConfiguration: (section: string) => ({
    get: (key: string) => settings[`${section}.${key}`],
  }),
  onDidChangeConfiguration: (fn: (e: { affectsConfiguration(s: string): boolean }) => void) => {
    configListeners.push(fn);
    return { dispose: () => configListeners.splice(configListeners.indexOf(fn), 1) };
  },
  registerTextDocumentContentProvider(scheme: string, p: { provideTextDocumentContent(uri: Uri): string }) {
    providers.set(scheme, p);
    return { dispose: () => providers.delete(scheme) };
  },
};

/** configListeners are the onDidChangeConfiguration handlers; changeSettings fires them. */
const configListeners: Array<(e: { affectsConfiguration(s: string): boolean }) => void> = [];

/** changeSettings sets settings and tells the listeners, as VS Code does after an edit. */
export function changeSettings(values: Record<string, unknown>): void {
  Object.assign(settings, values);
  const keys = Object.keys(values);
  const e = { affectsConfiguration: (s: string) => keys.some((k) => k === s || k.startsWith(s + '.')) };
  for (const fn of [...configListeners]) fn(e);
}

export enum DebugConfigurationProviderTriggerKind {
  Initial = 1,
  Dynamic = 2,
}

export class DebugAdapterExecutable {
  constructor(public command: string, public args: string[], public options?: unknown) {}
}

export const debug = {
  configProviders: [] as Array<{ type: string; provider: any; trigger?: DebugConfigurationProviderTriggerKind }>,
  adapterFactories: [] as Array<{ type: string; factory: any }>,
  registerDebugConfigurationProvider(type: string, provider: any, trigger?: DebugConfigurationProviderTriggerKind) {
    debug.configProviders.push({ type, provider, trigger });
    return { dispose() {} };
  },
  registerDebugAdapterDescriptorFactory(type: string, factory: any) {
    debug.adapterFactories.push({ type, factory });
    return { dispose() {} };
  },
  started: [] as Array<{ folder: unknown; config: Record<string, unknown> }>,
  async startDebugging(folder: unknown, config: Record<string, unknown>) {
    debug.started.push({ folder, config });
    return true;
  },
};
