// Entry point: checks the kloop binary, starts `kloop lsp` through
// vscode-languageclient (restarted in place when kloop.path changes or on
// "kloop: Restart kloop"), wires the status bar and palette commands, and
// contributes the `kloop` debug type whose adapter is `kloop dap`.
import * as path from 'node:path';
import * as vscode from 'vscode';
import { LanguageClient, LanguageClientOptions, ServerOptions, TransportKind } from 'vscode-languageclient/node';
import { probeBinary } from './binary';
import { Controller } from './controller';
import { ClientManager } from './lifecycle';
import { KloopStatus, goMainOf, initializationOptions, installCommand, replayViewFeature, resolveLaunch } from './logic';
import { dynamicConfigurations } from './mains';

let manager: ClientManager<LanguageClient> | undefined;

function binaryPath(): string {
  const p = vscode.workspace.getConfiguration('kloop').get<string>('path') || 'kloop';
  // ~ and workspace-relative paths, as users type them in settings.
  if (p.startsWith('~/')) return path.join(process.env.HOME ?? '', p.slice(2));
  const folder = vscode.workspace.workspaceFolders?.[0];
  if (folder && (p.startsWith('./') || p.startsWith('../'))) return path.join(folder.uri.fsPath, p);
  return p;
}

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  const output = vscode.window.createOutputChannel('kloop', { log: true });
  context.subscriptions.push(output);
  let controller: Controller | undefined;

  let problemKind: 'binary' | 'start' = 'binary';
  const showProblem = async (message: string) => {
    // A binary that is missing or wrong is fixed by installing or pointing
    // kloop.path at it; a server that would not start is read in the output.
    const pick = problemKind === 'binary'
      ? await vscode.window.showErrorMessage(message, 'Install kloop', 'Open Settings')
      : await vscode.window.showErrorMessage(message, 'Show output', 'Restart kloop');
    if (pick === 'Install kloop') await vscode.commands.executeCommand('kloop.install');
    if (pick === 'Open Settings') await vscode.commands.executeCommand('workbench.action.openSettings', 'kloop.path');
    if (pick === 'Show output') output.show(true);
    if (pick === 'Restart kloop') await vscode.commands.executeCommand('kloop.restart');
  };

  const mgr = new ClientManager<LanguageClient>({
    binary: binaryPath,
    probe: (b) => probeBinary(b),
    log: (line) => output.appendLine(line),
    problem: (message, kind) => {
      problemKind = kind;
      controller?.onProblem(message);
      void showProblem(message);
    },
    create: (binary) => {
      const standalone = vscode.workspace.getConfiguration('kloop').get<boolean>('standalone');
      const serverOptions: ServerOptions = {
        command: binary,
        args: standalone ? ['lsp', '--standalone'] : ['lsp'],
        transport: TransportKind.stdio,
      };
      const clientOptions: LanguageClientOptions = {
        documentSelector: [
          { scheme: 'file', language: 'go' },
          { scheme: 'file', language: 'yaml' },
        ],
        outputChannel: output,
        // serverCommand below starts a debug session for "& debug": say so, or
        // kloop offers only "& run".
        initializationOptions: initializationOptions(String(context.extension?.packageJSON?.version ?? '')),
        middleware: {
          // Code lenses and code actions run kloop.* through the client: the
          // "& debug" lens starts a debug session, a failure reads as kloop's
          // own sentence.
          executeCommand: async (command, args, next) => {
            if (!controller) return next(command, args);
            return controller.serverCommand(command, args, next);
          },
        },
      };
      const c = new LanguageClient('kloop', 'kloop', serverOptions, clientOptions);
      // kloop.replay opens a diff editor here, so kloop sends no summary message.
      c.registerFeature(replayViewFeature);
      c.onNotification('kloop/status', (st: KloopStatus) => controller?.onStatus(st));
      controller?.onStatus(undefined);
      return c;
    },
  });
  manager = mgr;

  controller = new Controller(mgr, output);
  context.subscriptions.push(controller, ...controller.register(() => {
    // Without a running kloop a command could only fail later, after its
    // prompts: say why at once.
    if (mgr.problem) void showProblem(mgr.problem);
    return mgr.problem === undefined;
  }));

  context.subscriptions.push(
    vscode.commands.registerCommand('kloop.restart', async () => {
      output.appendLine('Restarting kloop lsp');
      await mgr.restart();
      if (!mgr.problem) void vscode.window.showInformationMessage(`kloop: restarted (${mgr.binaryInUse}).`);
    }),
    vscode.commands.registerCommand('kloop.install', () => {
      const term = vscode.window.createTerminal({ name: 'kloop: install' });
      term.show();
      term.sendText(installCommand);
      void vscode.window.showInformationMessage(
        'kloop: installing with go install. When it finishes, run "kloop: Restart kloop"; if $(go env GOPATH)/bin is not on PATH, set "kloop.path" to the installed binary.');
    }),
    vscode.workspace.onDidChangeConfiguration((e) => {
      if (mgr.affects(e)) {
        output.appendLine('kloop settings changed: restarting kloop lsp');
        void mgr.restart();
      }
    }),
    vscode.debug.registerDebugAdapterDescriptorFactory('kloop', {
      createDebugAdapterDescriptor(session) {
        if (mgr.problem) throw new Error(mgr.problem);
        return new vscode.DebugAdapterExecutable(mgr.binaryInUse ?? binaryPath(), ['dap'], {
          cwd: session.workspaceFolder?.uri.fsPath,
        });
      },
    }),
    vscode.debug.registerDebugConfigurationProvider('kloop', {
      resolveDebugConfiguration(folder, config) {
        const ed = vscode.window.activeTextEditor;
        let activeGoMain;
        if (ed && ed.document.languageId === 'go' && folder) {
          const rel = path.relative(folder.uri.fsPath, path.dirname(ed.document.uri.fsPath));
          activeGoMain = goMainOf(ed.document.getText(), rel);
        }
        const r = resolveLaunch(config, { activeGoMain });
        if ('error' in r) {
          void vscode.window.showErrorMessage(r.error);
          return undefined;
        }
        return r.config as vscode.DebugConfiguration;
      },
    }),
    // Run and Debug's "kloop…" list without a launch.json: each main package,
    // locally and on each workload of the namespace.
    vscode.debug.registerDebugConfigurationProvider('kloop', {
      async provideDebugConfigurations(folder) {
        const roots = folder ? [folder] : (vscode.workspace.workspaceFolders ?? []);
        const listed = mgr.problem === undefined ? await controller?.listWorkloads() : undefined;
        const workloads = listed?.workloads.map((w) => w.workload) ?? [];
        const out: vscode.DebugConfiguration[] = [];
        for (const f of roots) {
          for (const c of await dynamicConfigurations(f.uri.fsPath, workloads)) {
            out.push({ ...c, name: roots.length > 1 ? `${c.name} (${f.name})` : c.name } as vscode.DebugConfiguration);
          }
        }
        return out;
      },
    }, vscode.DebugConfigurationProviderTriggerKind.Dynamic),
  );

  await mgr.restart();
}

export async function deactivate(): Promise<void> {
  await manager?.stop();
  manager = undefined;
}
