-- What the plugin ships besides the client: :checkhealth kloop, :help kloop,
-- lsp/kloop.lua (vim.lsp.config on 0.11+) and the nvim-dap launch.json type.
-- Runs after kloop_spec.lua, with its private daemon and workspace.
local T = _G.T
local api = vim.api
local here = vim.fn.fnamemodify(debug.getinfo(1, 'S').source:sub(2), ':p:h')
local plugin = vim.fn.fnamemodify(here, ':h')
local kloop = require('kloop')
local ws = T.tmp .. '/shop'
local main = ws .. '/cmd/orders/main.go'

-- checkhealth returns the report's lines with the markers of this
-- Neovim's format (0.7: "  - OK: msg", 0.10+: "- ✅ OK msg") reduced to
-- "OK msg", "WARNING msg", "ERROR msg", "INFO msg", "ADVICE msg" and
-- "## section".
local function checkhealth()
  vim.cmd('checkhealth kloop')
  local lines = {}
  for _, l in ipairs(api.nvim_buf_get_lines(0, 0, -1, false)) do
    local section = l:match('^##%s+(.*)$')
    local kind, msg = l:match('^%s*%-%s*[^%a]*(%u+):?%s+(.*)$')
    if section then
      table.insert(lines, '## ' .. vim.trim(section))
    elseif kind and (kind == 'OK' or kind == 'WARNING' or kind == 'ERROR' or kind == 'INFO') then
      table.insert(lines, kind .. ' ' .. vim.trim(msg))
    elseif l:match('^%s+%- ') and not l:match('ADVICE') then
      table.insert(lines, 'ADVICE ' .. vim.trim((l:gsub('^%s+%- ', ''))))
    end
  end
  vim.cmd('bwipeout!')
  return lines
end

local function version_line()
  local v = vim.fn.json_decode(vim.fn.system({ T.bin, 'version', '-o', 'json' }))
  return string.format('OK %s: kloop %s (%s, %s)', T.bin, v.version, v.go, v.platform)
end

local function nvim_version()
  local v = vim.version()
  return string.format('%d.%d.%d', v.major, v.minor, v.patch)
end

return {
  { ':checkhealth kloop reports the binary and its version, the daemon answering, nvim-dap missing and the Neovim version', function()
    kloop.setup({ cmd = T.bin })
    vim.cmd('edit ' .. main)
    T.eq({
      '## kloop: binary',
      version_line(),
      '## kloop: daemon',
      'OK the daemon answers (kloop status for ' .. ws .. ': no claim)',
      '## kloop: nvim-dap',
      'WARNING nvim-dap is not installed: the "Intercept … & debug" lens is not offered (only "& run") and no kloop debug configuration exists',
      'ADVICE install nvim-dap (' .. (vim.fn.has('nvim-0.8') == 1 and require('kloop.health').dap_pin() or '0.6.0, the last release for Neovim 0.7') .. ') to debug intercepted workloads and local programs with Delve',
      '## kloop: Neovim',
      'OK Neovim ' .. nvim_version(),
    }, checkhealth(), 'health report')
  end },

  { ':checkhealth kloop names a missing binary with what to do, skips the daemon when standalone, and sees the nvim-dap adapter', function()
    package.loaded.dap = { adapters = {}, configurations = {} }
    kloop.setup({ cmd = T.tmp .. '/no-such-kloop', standalone = true })
    local got = checkhealth()
    kloop.setup({ cmd = T.bin, standalone = true })
    local got2 = checkhealth()
    package.loaded.dap = nil
    kloop.setup({ cmd = T.bin })
    T.eq({
      '## kloop: binary',
      'ERROR kloop binary "' .. T.tmp .. '/no-such-kloop" not found or not executable',
      'ADVICE install it: go install github.com/kloop/kloop/cmd/kloop@latest',
      'ADVICE or pass its path: require("kloop").setup{ cmd = "/path/to/kloop" }',
      '## kloop: daemon',
      'INFO setup{ standalone = true }: each workspace is served by its own kloop lsp --standalone; no daemon is used',
      '## kloop: nvim-dap',
      'OK nvim-dap is installed; the kloop adapter runs ' .. T.tmp .. '/no-such-kloop dap',
      '## kloop: Neovim',
      'OK Neovim ' .. nvim_version(),
    }, got, 'health report with a missing binary')
    T.eq(version_line(), got2[2], 'binary line once cmd names kloop')
  end },

  { ':helptags on the plugin\'s doc makes :help kloop and every user command\'s tag resolve to doc/kloop.txt', function()
    local copy = T.tmp .. '/rtp'
    vim.fn.mkdir(copy .. '/doc', 'p')
    vim.fn.writefile(vim.fn.readfile(plugin .. '/doc/kloop.txt'), copy .. '/doc/kloop.txt')
    vim.cmd('helptags ' .. vim.fn.fnameescape(copy .. '/doc'))
    vim.opt.rtp:append(copy)
    local tags = { 'kloop', 'kloop-setup', 'kloop-commands', 'kloop-statusline', 'kloop-health', 'kloop-dap', 'kloop-lsp-enable', 'kloop.setup()', 'kloop.statusline()' }
    for name in pairs(api.nvim_get_commands({})) do
      if name:match('^Kloop') then
        table.insert(tags, ':' .. name)
      end
    end
    T.truthy(#tags > 20, 'the user commands are defined: ' .. vim.inspect(tags))
    for _, tag in ipairs(tags) do
      local ok, err = pcall(vim.cmd, 'help ' .. vim.fn.escape(tag, ' '))
      T.truthy(ok, ':help ' .. tag .. ': ' .. tostring(err))
      T.eq(copy .. '/doc/kloop.txt', api.nvim_buf_get_name(0), ':help ' .. tag .. ' opens')
      local line = api.nvim_get_current_line()
      T.truthy(line:find('*' .. tag .. '*', 1, true), ':help ' .. tag .. ' lands on its tag, got ' .. vim.inspect(line))
      vim.cmd('helpclose')
    end
  end },

  { 'lsp/kloop.lua gives vim.lsp.config what setup gives the client, and its config serves the workspace', function()
    local cfg = dofile(plugin .. '/lsp/kloop.lua')
    local settings = kloop.client_settings()
    T.eq({ T.bin, 'lsp' }, cfg.cmd, 'cmd')
    T.eq({ 'go', 'yaml' }, cfg.filetypes, 'filetypes')
    T.eq({ '.kloop.yaml', 'go.mod', '.git' }, cfg.root_markers, 'root_markers')
    T.eq(kloop.init_options(), cfg.init_options, 'init_options')
    T.eq(vim.tbl_keys(settings.handlers), vim.tbl_keys(cfg.handlers), 'handlers')
    T.eq(vim.tbl_keys(settings.commands), vim.tbl_keys(cfg.commands), 'commands')
    T.eq(nil, cfg.name, 'no name (vim.lsp.config names it kloop)')
    vim.cmd('edit ' .. main)
    local root
    cfg.root_dir(api.nvim_get_current_buf(), function(r) root = r end)
    T.eq(ws, root, 'root of main.go')
    -- Start a client from it as vim.lsp.enable would once the root is known.
    cfg.root_dir, cfg.name = root, 'kloop-enable'
    cfg.workspace_folders = { { uri = vim.uri_from_fname(root), name = 'shop' } }
    local id = vim.lsp.start_client(cfg)
    T.truthy(id, 'client started')
    T.wait(10000, function() local c = vim.lsp.get_client_by_id(id) return c and c.initialized end, 'the client to initialize')
    local st
    vim.lsp.get_client_by_id(id).request('workspace/executeCommand', { command = 'kloop.status', arguments = {} }, function(err, res)
      st = err and { error = err.message } or res
    end)
    T.wait(10000, function() return st ~= nil end, 'kloop.status through the client')
    T.eq(ws, st.workspace, 'the workspace kloop serves it')
    kloop.stop_client(vim.lsp.get_client_by_id(id))
    T.wait(5000, function() return vim.lsp.get_client_by_id(id) == nil end, 'the client to stop')
  end },

  { 'with nvim-dap, launch.json\'s type kloop maps to Go buffers and other types stay', function()
    package.loaded.dap = { adapters = {}, configurations = {} }
    package.loaded['dap.ext.vscode'] = { type_to_filetypes = { codelldb = { 'c', 'cpp' } } }
    kloop.setup({ cmd = T.bin })
    local vscode = package.loaded['dap.ext.vscode']
    package.loaded.dap, package.loaded['dap.ext.vscode'] = nil, nil
    T.eq({ codelldb = { 'c', 'cpp' }, kloop = { 'go' } }, vscode.type_to_filetypes, 'type_to_filetypes')
    T.eq({ kloop = { 'go' } }, kloop.dap_type_to_filetypes, 'the mapping for load_launchjs')
  end },
}
