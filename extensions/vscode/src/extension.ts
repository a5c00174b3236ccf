// Entry point: checks the kloop binary, starts `kloop lsp` through
// vscode-languageclient, wires the status bar and palette commands, and
// contributes the `kloop` debug type whose adapter is `kloop dap`.
import * as path from 'node:path';
import * as vscode from 'vscode';
import { LanguageClient, LanguageClientOptions, ServerOptions, TransportKind } from 'vscode-languageclient/node';
import { probeBinary } from './binary';
import { Controller } from './controller';
import { KloopStatus, goMainOf, initializationOptions, replayViewFeature, resolveLaunch } from './logic';

let client: LanguageClient | undefined;

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
  const binary = binaryPath();

  const verdict = await probeBinary(binary);
  if (!verdict.ok) {
    output.appendLine(verdict.message);
    const showProblem = async () => {
      const pick = await vscode.window.showErrorMessage(verdict.message, 'Open Settings');
      if (pick === 'Open Settings') await vscode.commands.executeCommand('workbench.action.openSettings', 'kloop.path');
    };
    for (const id of ['kloop.claim.ui', 'kloop.release.ui', 'kloop.intercept.ui', 'kloop.leave.ui', 'kloop.status.ui', 'kloop.relaunch.ui', 'kloop.env.ui', 'kloop.logs.ui', 'kloop.requests.ui', 'kloop.replay.ui', 'kloop.doctor.ui', 'kloop.export.ui', 'kloop.agent.install.ui', 'kloop.agent.uninstall.ui', 'kloop.actions', 'kloop.showOutput']) {
      context.subscriptions.push(vscode.commands.registerCommand(id, showProblem));
    }
    context.subscriptions.push(vscode.workspace.onDidChangeConfiguration((e) => {
      if (e.affectsConfiguration('kloop.path')) void vscode.commands.executeCommand('workbench.action.reloadWindow');
    }));
    void showProblem();
    return;
  }
  output.appendLine(`Using kloop ${verdict.version} at ${binary}`);

  const standalone = vscode.workspace.getConfiguration('kloop').get<boolean>('standalone');
  const serverOptions: ServerOptions = {
    command: binary,
    args: standalone ? ['lsp', '--standalone'] : ['lsp'],
    transport: TransportKind.stdio,
  };
  let controller: Controller | undefined;
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
  client = new LanguageClient('kloop', 'kloop', serverOptions, clientOptions);
  // kloop.replay opens a diff editor here, so kloop sends no summary message.
  client.registerFeature(replayViewFeature);
  controller = new Controller(client, output);
  context.subscriptions.push(controller, ...controller.register());
  context.subscriptions.push(client.onNotification('kloop/status', (st: KloopStatus) => controller?.onStatus(st)));

  context.subscriptions.push(
    vscode.debug.registerDebugAdapterDescriptorFactory('kloop', {
      createDebugAdapterDescriptor(session) {
        return new vscode.DebugAdapterExecutable(binary, ['dap'], {
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
  );

  try {
    await client.start();
  } catch (err) {
    const msg = `kloop lsp did not start: ${(err as Error).message ?? err}`;
    output.appendLine(msg);
    void vscode.window.showErrorMessage(msg, 'Show output').then((p) => p && output.show(true));
  }
}

export async function deactivate(): Promise<void> {
  await client?.stop();
  client = undefined;
}
