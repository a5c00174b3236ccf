-- kloop's language server for Neovim 0.11+:
--   vim.lsp.enable('kloop')
-- reads this file through vim.lsp.config. It gives the client what
-- require('kloop').setup{} gives it (cmd, handlers for kloop/status and
-- $/progress, the kloop.* commands, initializationOptions), with filetypes
-- go and yaml and the workspace at the nearest .kloop.yaml, go.mod or .git.
-- Call setup{} as well for the user commands; override fields with
-- vim.lsp.config('kloop', { ... }).
return require('kloop').lsp_enable_config()
