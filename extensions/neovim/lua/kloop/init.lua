-- kloop for Neovim: the LSP client for `kloop lsp`, user commands, a
-- statusline fed by `kloop/status`, code lenses, and an nvim-dap adapter for
-- `kloop dap` when nvim-dap is installed.
--
-- Works on Neovim 0.7.2 (Debian 12: vim.lsp.start_client +
-- vim.lsp.buf_attach_client) and on 0.8+ (vim.lsp.start).
local M = {}

-- The plugin's version, sent to kloop as initializationOptions.extensionVersion
-- (`kloop doctor` reports it).
M.version = '0.1.0'

local api = vim.api

M.defaults = {
  -- The kloop binary. A bare name is looked up on PATH.
  cmd = 'kloop',
  -- true: `kloop lsp --standalone` (no shared daemon).
  standalone = false,
  filetypes = { 'go', 'yaml' },
  root_markers = { '.kloop.yaml', 'go.mod', '.git' },
  -- Refresh and show code lenses in kloop buffers.
  codelens = true,
  -- Register the nvim-dap adapter and a Go configuration when nvim-dap is present.
  dap = true,
  -- Extra LSP client settings (on_attach, capabilities, ...).
  lsp = {},
}

M.config = vim.deepcopy(M.defaults)
-- Last kloop/status per workspace root, and the client of each root.
M.status = {}
M.clients = {}
-- $/progress in flight per workspace root: { tokens = { [token] = {
-- title, message, percentage } }, order = { token, ... } }.
M.progress = {}

local has_start = vim.lsp.start ~= nil -- 0.8+

local function has(feature)
  return vim.fn.has(feature) == 1
end

-- One code path over the client API's forms: 0.11 made request/stop methods
-- and deprecates the dot form (gone in 0.13); 0.7 .. 0.10 only have the dot
-- form, whose fields are closures that take no self.
local function client_request(c, method, params, handler, bufnr)
  if has('nvim-0.11') then
    return c:request(method, params, handler, bufnr)
  end
  return c.request(method, params, handler, bufnr)
end

function M.stop_client(c, force)
  if has('nvim-0.11') then
    return c:stop(force)
  end
  return c.stop(force)
end

-- refresh_codelens refreshes one buffer's lenses: on 0.10+ refresh() without
-- a buffer refreshes every buffer, which asks kloop for lenses of files it
-- does not serve.
local function refresh_codelens(bufnr)
  if not M.config.codelens then
    return
  end
  bufnr = (bufnr == nil or bufnr == 0) and api.nvim_get_current_buf() or bufnr
  if has('nvim-0.10') then
    pcall(vim.lsp.codelens.refresh, { bufnr = bufnr })
  else
    pcall(vim.lsp.codelens.refresh)
  end
end
M._refresh_codelens = refresh_codelens

local function notify(msg, level)
  vim.notify(msg, level or vim.log.levels.INFO, { title = 'kloop' })
end

-- root_of finds the workspace folder of a file: nearest parent with a marker.
function M.root_of(path)
  local dir = vim.fn.fnamemodify(path, ':p:h')
  while dir and dir ~= '' do
    for _, m in ipairs(M.config.root_markers) do
      if (vim.uv or vim.loop).fs_stat(dir .. '/' .. m) then
        return dir
      end
    end
    local up = vim.fn.fnamemodify(dir, ':h')
    if up == dir then
      break
    end
    dir = up
  end
  return vim.fn.fnamemodify(path, ':p:h')
end

local function shortwl(w)
  return (w:gsub('^deployment/', ''))
end

local function duration(ms)
  if ms < 1000 then
    return string.format('%dms', ms)
  elseif ms < 60000 then
    return string.format('%.1fs', ms / 1000)
  end
  return string.format('%dm', math.floor(ms / 60000 + 0.5))
end

local function isnil(v)
  return v == nil or v == vim.NIL
end

-- format_status is the statusline text of one kloop/status.
function M.format_status(st)
  if isnil(st) then
    return 'kloop …'
  end
  local parts = {}
  if not isnil(st.claim) then
    local ns = st.claim.namespace
    table.insert(parts, 'kloop: ' .. ((not isnil(ns) and ns ~= '') and ns or st.claim.slot))
  else
    table.insert(parts, 'kloop: no claim')
  end
  local intercepts = isnil(st.intercepts) and {} or st.intercepts
  for _, ic in ipairs(intercepts) do
    table.insert(parts, string.format('⇄ %s %d req', shortwl(ic.workload), ic.requests or 0))
  end
  if not isnil(st.lastBuild) and st.lastBuild.ok == false then
    table.insert(parts, '✗ build failed')
  elseif not isnil(st.lastRelaunchMillis) and st.lastRelaunchMillis > 0 then
    table.insert(parts, '↻ ' .. duration(st.lastRelaunchMillis))
  end
  return table.concat(parts, ' ')
end

-- kloop_clients lists kloop clients, of one buffer or all (0.7 .. 0.10+).
local function kloop_clients(bufnr)
  local list = {}
  if vim.lsp.get_clients then
    return vim.lsp.get_clients({ name = 'kloop', bufnr = bufnr })
  end
  local all = bufnr and vim.lsp.buf_get_clients(bufnr) or vim.lsp.get_active_clients()
  for _, c in pairs(all) do
    if c.name == 'kloop' then
      table.insert(list, c)
    end
  end
  return list
end

local function client_for(bufnr)
  bufnr = (bufnr == nil or bufnr == 0) and api.nvim_get_current_buf() or bufnr
  local mine = kloop_clients(bufnr)
  if mine[1] then
    return mine[1]
  end
  -- A command typed from a non-kloop buffer uses the only kloop client.
  local only
  for _, c in ipairs(kloop_clients(nil)) do
    if c.name == 'kloop' then
      if only then
        return nil
      end
      only = c
    end
  end
  return only
end

-- format_progress is the statusline text of one $/progress in flight:
-- its title, the last message and percentage kloop reported.
function M.format_progress(p)
  local text = p.title or ''
  if not isnil(p.message) and p.message ~= '' then
    text = text .. ': ' .. p.message
  end
  if not isnil(p.percentage) then
    text = text .. ' ' .. tostring(p.percentage) .. '%'
  end
  return text
end

-- with_progress appends the newest work in flight of a workspace, so a
-- claim or build that takes a while shows what it is doing.
local function with_progress(text, root)
  local inflight = root and M.progress[root]
  local last = inflight and inflight.order[#inflight.order]
  if not last then
    return text
  end
  return text .. ' · ' .. M.format_progress(inflight.tokens[last])
end

-- statusline returns the kloop part of a statusline for the current buffer:
--   set statusline=%f\ %{v:lua.require'kloop'.statusline()}
function M.statusline()
  local bufnr = api.nvim_get_current_buf()
  local own = kloop_clients(bufnr)[1]
  if own then
    return with_progress(M.format_status(M.status[own.config.root_dir]), own.config.root_dir)
  end
  local name = api.nvim_buf_get_name(bufnr)
  if vim.tbl_contains(M.config.filetypes, vim.bo[bufnr].filetype) then
    -- Started but not initialized yet (0.7 lists only initialized clients).
    local id = name ~= '' and M.clients[M.root_of(name)]
    if id and vim.lsp.get_client_by_id(id) then
      return M.format_status(nil)
    end
    return ''
  end
  -- Other buffers (quickfix, terminal, help) show the only kloop session.
  local c = client_for(bufnr)
  return c and with_progress(M.format_status(M.status[c.config.root_dir]), c.config.root_dir) or ''
end

-- on_progress keeps the $/progress reports in flight per workspace (begin
-- adds one, report updates it, end removes it) for the statusline, after
-- Neovim's own handler so vim.lsp.util.get_progress_messages and the
-- LspProgress events keep working.
local function on_progress(err, result, ctx, config)
  local default = vim.lsp.handlers['$/progress']
  if default then
    pcall(default, err, result, ctx, config)
  end
  if err or isnil(result) or type(result.value) ~= 'table' then
    return
  end
  local c = vim.lsp.get_client_by_id(ctx.client_id)
  local root = c and c.config.root_dir
  if not root then
    return
  end
  local inflight = M.progress[root] or { tokens = {}, order = {} }
  M.progress[root] = inflight
  local token, v = tostring(result.token), result.value
  if v.kind == 'begin' then
    inflight.tokens[token] = { title = v.title, message = v.message, percentage = v.percentage }
    table.insert(inflight.order, token)
  elseif v.kind == 'report' and inflight.tokens[token] then
    local p = inflight.tokens[token]
    if not isnil(v.message) then
      p.message = v.message
    end
    if not isnil(v.percentage) then
      p.percentage = v.percentage
    end
  elseif v.kind == 'end' then
    inflight.tokens[token] = nil
    inflight.order = vim.tbl_filter(function(t)
      return t ~= token
    end, inflight.order)
  end
  pcall(vim.cmd, 'redrawstatus!')
  api.nvim_exec_autocmds('User', { pattern = 'KloopProgress', modeline = false })
end
M._on_progress = on_progress

local function on_status(err, result, ctx)
  if err or isnil(result) then
    return
  end
  local c = vim.lsp.get_client_by_id(ctx.client_id)
  local root = c and c.config.root_dir or result.workspace
  M.status[root] = result
  pcall(vim.cmd, 'redrawstatus!')
  api.nvim_exec_autocmds('User', { pattern = 'KloopStatus', modeline = false })
end

-- kloop's window/showMessage (a warning that an intercept for debugging has
-- no debugger, a build's outcome) goes through vim.notify like everything
-- else the plugin says, at the level kloop gave it.
local message_levels = { vim.log.levels.ERROR, vim.log.levels.WARN, vim.log.levels.INFO, vim.log.levels.DEBUG }
local function on_show_message(err, result)
  if err or isnil(result) or type(result.message) ~= 'string' then
    return
  end
  notify(result.message, message_levels[result.type] or vim.log.levels.INFO)
end
M._on_show_message = on_show_message

-- describe_error turns a JSON-RPC error into the sentence the user reads.
function M.describe_error(_, err)
  local msg = type(err) == 'table' and err.message or tostring(err)
  if not msg:match('^kloop') then
    msg = 'kloop: ' .. msg
  end
  return msg
end

-- execute runs workspace/executeCommand on the kloop client; on_result gets
-- the result, a failure is shown with vim.notify at ERROR, or given to
-- on_error (the sentence and the error) when the caller has a fallback.
function M.execute(command, args, on_result, bufnr, on_error)
  local c = client_for(bufnr or 0)
  if not c then
    local msg = 'kloop: no kloop language server is running here: open a Go or YAML file of the workspace first'
    if on_error then
      return on_error(msg)
    end
    notify(msg, vim.log.levels.ERROR)
    return
  end
  local params = { command = command, arguments = {} }
  if args ~= nil then
    params.arguments = { next(args) == nil and vim.empty_dict() or args }
  end
  local target = (bufnr == nil or bufnr == 0) and api.nvim_get_current_buf() or bufnr
  client_request(c, 'workspace/executeCommand', params, function(err, result)
    -- Running a lens hides it until the next refresh: refresh either way.
    refresh_codelens(target)
    if err then
      if on_error then
        return on_error(M.describe_error(command, err), err)
      end
      notify(M.describe_error(command, err), vim.log.levels.ERROR)
      return
    end
    if on_result then
      on_result(result)
    end
  end, target)
end

-- Lenses and code actions name kloop.* commands; run them through execute
-- so their failures read the same as the user commands'.
local function client_commands()
  local cmds = {}
  for _, name in ipairs({ 'kloop.claim', 'kloop.release', 'kloop.intercept', 'kloop.leave', 'kloop.status', 'kloop.relaunch', 'kloop.env', 'kloop.logs', 'kloop.requests', 'kloop.replay', 'kloop.doctor', 'kloop.export', 'kloop.agent.install', 'kloop.agent.uninstall', 'kloop.workloads' }) do
    cmds[name] = function(command, ctx)
      local arg = command.arguments and command.arguments[1] or nil
      -- "Intercept … & debug" starts an nvim-dap session. kloop offers it
      -- only when nvim-dap was there at start; without it an intercept for
      -- debugging would send traffic here with nothing to answer it.
      if name == 'kloop.intercept' and type(arg) == 'table' and arg.debug == true then
        if not M.debug_intercept(arg) then
          notify('kloop: "& debug" needs nvim-dap, which is not loaded now; install it (or keep setup{ dap = true }), or run "Intercept & run"', vim.log.levels.ERROR)
        end
        refresh_codelens(ctx and ctx.bufnr)
        return
      end
      M.execute(command.command, arg, name == 'kloop.env' and M._env_result(arg and arg.workload) or nil, ctx and ctx.bufnr)
    end
  end
  return cmds
end

function M._env_result(workload)
  return function(res)
    vim.fn.setreg('"', res.content)
    pcall(vim.fn.setreg, '+', res.content)
    local n = 0
    for line in res.content:gmatch('[^\n]+') do
      if line:match('^[%a_][%w_]*=') then
        n = n + 1
      end
    end
    notify(string.format('kloop: yanked %d variables of %s (%s)', n, workload or 'the workload', res.format))
  end
end

-- has_dap: nvim-dap is installed and the plugin may use it.
local function has_dap()
  return M.config.dap and (pcall(require, 'dap')) or false
end

-- init_options tell kloop whether this Neovim starts kloop debug sessions
-- (nvim-dap present: the "& debug" lens runs one; without it kloop offers
-- "& run" only) and the plugin's version, for `kloop doctor`.
function M.init_options()
  return { startsDebugSessions = has_dap(), extensionVersion = M.version }
end

-- forget drops what the plugin keeps about a client that exited.
local function forget(client_id)
  for root, id in pairs(M.clients) do
    if id == client_id then
      M.clients[root] = nil
      M.status[root] = nil
      M.progress[root] = nil
    end
  end
  pcall(vim.cmd, 'redrawstatus!')
end

-- client_settings is what setup() and lsp/kloop.lua (vim.lsp.config on
-- 0.11+) both give the client: the same cmd, handlers, commands,
-- capabilities and initializationOptions, so either way kloop sees one
-- Neovim.
function M.client_settings()
  local cmd = { M.config.cmd, 'lsp' }
  if M.config.standalone then
    table.insert(cmd, '--standalone')
  end
  local user = M.config.lsp or {}
  local cfg = vim.tbl_extend('force', {
    name = 'kloop',
    cmd = cmd,
    handlers = { ['kloop/status'] = on_status, ['window/showMessage'] = on_show_message, ['$/progress'] = on_progress },
    init_options = M.init_options(),
    commands = client_commands(),
    capabilities = vim.tbl_deep_extend('force', vim.lsp.protocol.make_client_capabilities(), {
      -- :KloopReplay shows its own diff split, so kloop sends no summary message.
      experimental = { kloopReplayView = true },
    }),
  }, user)
  local user_attach = user.on_attach
  cfg.on_attach = function(client, bufnr)
    -- vim.lsp.enable starts clients without attach(): learn the root here.
    if client.config.root_dir then
      M.clients[client.config.root_dir] = client.id
    end
    if M.config.codelens then
      local group = api.nvim_create_augroup('kloop_codelens_' .. bufnr, { clear = true })
      api.nvim_create_autocmd({ 'BufEnter', 'InsertLeave', 'BufWritePost', 'CursorHold' }, {
        group = group,
        buffer = bufnr,
        callback = function()
          refresh_codelens(bufnr)
        end,
      })
      if bufnr == api.nvim_get_current_buf() then
        refresh_codelens(bufnr)
      end
    end
    if user_attach then
      user_attach(client, bufnr)
    end
  end
  local user_exit = user.on_exit
  cfg.on_exit = function(code, signal, client_id)
    forget(client_id)
    if user_exit then
      user_exit(code, signal, client_id)
    end
  end
  return cfg
end

local function lsp_config(root)
  local cfg = M.client_settings()
  cfg.root_dir = root
  cfg.workspace_folders = { { uri = vim.uri_from_fname(root), name = vim.fn.fnamemodify(root, ':t') } }
  return cfg
end

-- lsp_enable_config is the vim.lsp.config of lsp/kloop.lua (0.11+).
function M.lsp_enable_config()
  local cfg = M.client_settings()
  cfg.name = nil
  cfg.filetypes = vim.deepcopy(M.config.filetypes)
  cfg.root_markers = vim.deepcopy(M.config.root_markers)
  -- root_dir decides over root_markers: the nearest directory holding any
  -- marker, as setup() and kloop's own CLI pick it. A plain root_markers
  -- list would prefer a .kloop.yaml far above a nearer go.mod.
  cfg.root_dir = function(bufnr, on_dir)
    local name = api.nvim_buf_get_name(bufnr)
    if name ~= '' then
      on_dir(M.root_of(name))
    end
  end
  return cfg
end

-- attach starts (or reuses) the kloop client of the buffer's workspace.
function M.attach(bufnr)
  bufnr = (bufnr == nil or bufnr == 0) and api.nvim_get_current_buf() or bufnr
  local name = api.nvim_buf_get_name(bufnr)
  if name == '' or vim.bo[bufnr].buftype ~= '' then
    return nil
  end
  local root = M.root_of(name)
  if vim.fn.executable(M.config.cmd) ~= 1 then
    if not M._warned then
      M._warned = true
      notify('kloop: ' .. M.config.cmd .. ' not found or not executable; install kloop or pass cmd = "/path/to/kloop" to setup()', vim.log.levels.ERROR)
    end
    return nil
  end
  local id
  if has_start then
    id = vim.lsp.start(lsp_config(root), { bufnr = bufnr })
  else
    id = M.clients[root]
    if not id or not vim.lsp.get_client_by_id(id) then
      id = vim.lsp.start_client(lsp_config(root))
    end
    if id then
      vim.lsp.buf_attach_client(bufnr, id)
    end
  end
  M.clients[root] = id
  return id
end

-- Arguments of :KloopIntercept: WORKLOAD [--port P] [--header K=V]... [--path /api/]
-- [--path-regex RE] [--method GET,POST]... [--match all|any] [--program ./cmd/x] [--debug],
-- as kloop intercept spells them; the daemon checks the rule.
local function parse_intercept(fargs)
  local args, i = {}, 1
  while i <= #fargs do
    local a = fargs[i]
    if a == '--port' then
      args.port, i = fargs[i + 1], i + 1
    elseif a == '--program' then
      args.program, i = fargs[i + 1], i + 1
    elseif a == '--header' then
      local k, v = (fargs[i + 1] or ''):match('^([^=]+)=(.*)$')
      if not k then
        return nil, '--header wants NAME=VALUE'
      end
      args.header = args.header or {}
      args.header[k], i = v, i + 1
    elseif a == '--path' then
      args.path, i = fargs[i + 1], i + 1
    elseif a == '--path-regex' then
      args.pathRegex, i = fargs[i + 1], i + 1
    elseif a == '--method' then
      args.method = args.method or {}
      table.insert(args.method, fargs[i + 1])
      i = i + 1
    elseif a == '--match' then
      args.match, i = fargs[i + 1], i + 1
    elseif a == '--debug' then
      args.debug = true
    elseif a:sub(1, 2) == '--' then
      return nil, 'unknown flag ' .. a
    elseif not args.workload then
      args.workload = a
    else
      return nil, 'unexpected argument ' .. a
    end
    i = i + 1
  end
  return args
end
M._parse_intercept = parse_intercept

-- format_workload is one line of the workload picker: name, replicas,
-- ports, and who intercepts it, as `kloop workloads` prints them.
function M.format_workload(w)
  if w.type_name then
    return 'Type a workload name...'
  end
  local ports = {}
  for _, p in ipairs(isnil(w.ports) and {} or w.ports) do
    table.insert(ports, isnil(p.name) and tostring(p.port) or string.format('%d(%s)', p.port, p.name))
  end
  local line = string.format('%s  %d/%d ready  ports %s', w.workload, w.ready or 0, w.replicas or 0, #ports > 0 and table.concat(ports, ',') or '-')
  local a = w.agent
  if not isnil(a) then
    local parts = {}
    if not isnil(a.error) and a.error ~= '' then
      table.insert(parts, 'unreadable agent record')
    end
    if a.resident then
      table.insert(parts, 'resident agent')
    end
    local holders = {}
    for _, h in ipairs(isnil(a.holders) and {} or a.holders) do
      table.insert(holders, string.format('%s (%s)', h.name, (isnil(h.rule) or h.rule == '') and 'global' or h.rule))
    end
    if #holders > 0 then
      table.insert(parts, 'intercepted by ' .. table.concat(holders, ', '))
    end
    line = line .. '  [' .. (#parts > 0 and table.concat(parts, '; ') or 'dormant agent') .. ']'
  end
  return line
end

-- with_workload calls fn with the workload given, else one picked from
-- kloop.workloads with vim.ui.select; when kloop cannot list them (no
-- cluster yet, RBAC) or lists none, the user types one.
local function with_workload(given, prompt, fn)
  if given and given ~= '' then
    return fn(given)
  end
  local function ask()
    vim.ui.input({ prompt = prompt, default = 'deployment/' }, function(w)
      if w and w ~= '' and w ~= 'deployment/' then
        fn(w)
      end
    end)
  end
  M.execute('kloop.workloads', {}, function(res)
    local list = (isnil(res) or isnil(res.workloads)) and {} or res.workloads
    if #list == 0 then
      return ask()
    end
    local items = vim.list_extend({}, list)
    table.insert(items, { type_name = true })
    vim.ui.select(items, { prompt = prompt, format_item = M.format_workload, kind = 'kloop.workload' }, function(w)
      if not w then
        return
      elseif w.type_name then
        ask()
      else
        fn(w.workload)
      end
    end)
  end, nil, function(msg)
    -- Not an error for the user: typing a name still works.
    notify(msg .. '; type the workload instead', vim.log.levels.DEBUG)
    ask()
  end)
end
M._with_workload = with_workload

local function show_status(st)
  local c = client_for(0)
  if c then
    M.status[c.config.root_dir] = st
  end
  pcall(vim.cmd, 'redrawstatus!')
  local lines = { M.format_status(st), 'workspace: ' .. st.workspace }
  if not isnil(st.claim) then
    table.insert(lines, string.format('claim: %s/%s until %s (%s)', st.claim.pool, st.claim.slot, st.claim['until'], st.claim.kubeconfig))
  end
  for _, ic in ipairs(isnil(st.intercepts) and {} or st.intercepts) do
    table.insert(lines, string.format('intercept: %s ports %s, %d requests, %s', ic.workload, table.concat(ic.ports or {}, ','), ic.requests or 0, ic.state))
    if not isnil(ic.notice) and ic.notice ~= '' then
      table.insert(lines, '  warning: ' .. ic.notice)
    end
  end
  if not isnil(st.process) then
    table.insert(lines, string.format('process: %s pid %d %s', st.process.program, st.process.pid, st.process.state))
  end
  notify(table.concat(lines, '\n'))
end

M._show_status = show_status

local function create_commands()
  local cmd = api.nvim_create_user_command
  cmd('KloopClaim', function(o)
    local args = {}
    if o.fargs[1] then args.pool = o.fargs[1] end
    if o.fargs[2] then args['for'] = o.fargs[2] end
    M.execute('kloop.claim', args, function(res)
      if not isnil(res) then
        notify(string.format('kloop: claimed %s from %s', isnil(res.namespace) and res.slot or res.namespace, res.pool))
      end
    end)
  end, { nargs = '*', desc = 'kloop: claim a dev namespace [POOL [FOR]]' })
  cmd('KloopRelease', function()
    M.execute('kloop.release', {}, function() notify('kloop: released') end)
  end, { nargs = 0, desc = 'kloop: release the dev namespace' })
  cmd('KloopIntercept', function(o)
    local args, err = parse_intercept(o.fargs)
    if not args then
      return notify('kloop: :KloopIntercept ' .. err .. ' (usage: WORKLOAD [--port P] [--header K=V] [--path P] [--path-regex RE] [--method M] [--match all|any] [--program ./cmd/x] [--debug])', vim.log.levels.ERROR)
    end
    with_workload(args.workload, 'Intercept workload: ', function(w)
      args.workload = w
      M.execute('kloop.intercept', args, function() notify('kloop: intercepting ' .. w) end)
    end)
  end, { nargs = '*', desc = 'kloop: intercept WORKLOAD [--port P] [--header K=V] [--path P] [--path-regex RE] [--method M] [--match all|any] [--program P] [--debug]' })
  cmd('KloopLeave', function(o)
    local args = o.args ~= '' and { workload = o.args } or { all = true }
    M.execute('kloop.leave', args, function() notify('kloop: left ' .. (args.workload or 'all intercepts')) end)
  end, { nargs = '?', desc = 'kloop: leave WORKLOAD (default: all)' })
  cmd('KloopAgentInstall', function(o)
    with_workload(o.fargs[1], 'Install a resident agent into: ', function(w)
      M.execute('kloop.agent.install', { workload = w }, function(res)
        notify('kloop: resident agent in ' .. res.workload .. '; intercepts of it start without a rollout')
      end)
    end)
  end, { nargs = '?', desc = 'kloop: install a resident agent into WORKLOAD' })
  cmd('KloopAgentUninstall', function(o)
    with_workload(o.fargs[1], 'Remove the resident agent of: ', function(w)
      M.execute('kloop.agent.uninstall', { workload = w }, function() notify('kloop: removed the agent from ' .. w) end)
    end)
  end, { nargs = '?', desc = 'kloop: remove WORKLOAD\'s resident agent' })
  cmd('KloopWorkloads', function()
    M.execute('kloop.workloads', {}, function(res)
      local lines = { 'kloop: workloads of namespace ' .. (res.namespace or '?') }
      for _, w in ipairs(isnil(res.workloads) and {} or res.workloads) do
        table.insert(lines, M.format_workload(w))
      end
      if #lines == 1 then
        table.insert(lines, 'no Deployments or StatefulSets')
      end
      notify(table.concat(lines, '\n'))
    end)
  end, { nargs = 0, desc = 'kloop: list the namespace\'s Deployments and StatefulSets' })
  cmd('KloopStatus', function()
    M.execute('kloop.status', nil, show_status)
  end, { nargs = 0, desc = 'kloop: show status' })
  cmd('KloopRelaunch', function(o)
    M.execute('kloop.relaunch', o.args ~= '' and { workload = o.args } or {}, function() notify('kloop: relaunched') end)
  end, { nargs = '?', desc = 'kloop: rebuild and restart now' })
  cmd('KloopEnv', function(o)
    with_workload(o.fargs[1], 'Env of workload: ', function(w)
      M.execute('kloop.env', { workload = w, format = o.fargs[2] or 'dotenv' }, M._env_result(w))
    end)
  end, { nargs = '*', desc = 'kloop: yank WORKLOAD env [dotenv|json|shell]' })
  cmd('KloopLogs', function(o)
    M.execute('kloop.logs', o.args ~= '' and { tail = tonumber(o.args) } or {}, function(res)
      local lines = { 'kloop: last output of ' .. (res.program or '?') }
      for _, l in ipairs(res.lines or {}) do
        table.insert(lines, l.line)
      end
      vim.api.nvim_echo({ { table.concat(lines, '\n') } }, true, {})
    end)
  end, { nargs = '?', desc = 'kloop: show the program output kloop keeps [TAIL]' })
  -- pick_recorded asks for one of the recorded requests, newest first.
  local function pick_recorded(prompt, on_pick)
    M.execute('kloop.requests', {}, function(res)
      local reqs = res.requests or {}
      if #reqs == 0 then
        notify('kloop: no requests recorded yet; they are recorded while a workload is intercepted')
        return
      end
      local items = {}
      for i = #reqs, 1, -1 do
        table.insert(items, reqs[i])
      end
      vim.ui.select(items, {
        prompt = prompt,
        format_item = function(r)
          return string.format('#%d %s %s -> %s  %s', r.id, r.method, r.target, r.response and r.response.status or '-', r.workload)
        end,
      }, function(r)
        if r then
          on_pick(r)
        end
      end)
    end)
  end
  cmd('KloopRequests', function()
    pick_recorded('Replay (to your process only): ', M.replay)
  end, { desc = 'kloop: pick a recorded request and replay it' })
  cmd('KloopExport', function(o)
    local function export(id)
      M.execute('kloop.export', { id = id, format = 'go-test' }, function(res)
        vim.cmd('edit ' .. vim.fn.fnameescape(res.file))
        notify(string.format('kloop: wrote %s (%d outbound calls stubbed); run it with go test -run %s', res.test, res.outbound or 0, res.test))
      end)
    end
    if o.args ~= '' then
      export(tonumber(o.args))
      return
    end
    pick_recorded('Export as a Go test: ', function(r)
      export(r.id)
    end)
  end, { nargs = '?', desc = 'kloop: write recorded request [ID] as a Go test (its outbound calls as stubs) and open it' })
  cmd('KloopReplay', function(o)
    M.replay(o.args ~= '' and { id = tonumber(o.args) } or nil)
  end, { nargs = '?', desc = 'kloop: replay recorded request [ID] (default: the last) and show what changed' })
end

local safe_methods = { GET = true, HEAD = true, OPTIONS = true, TRACE = true }

-- replay sends a recorded request (the last when req is nil) again to the
-- local process; a method that may change data asks first.
function M.replay(req)
  local args = {}
  if req then
    args.id = req.id
    if req.method and not safe_methods[req.method] then
      if vim.fn.confirm(string.format('kloop: #%d is a %s, which may change data when sent again. Replay it?', req.id, req.method), '&Replay\n&Cancel', 2) ~= 1 then
        return
      end
      args.yes = true
    end
  end
  M.execute('kloop.replay', args, M._replay_result)
end

-- _replay_result shows a replay's outcome: one line when the answer is the
-- same, else the differences.
function M._replay_result(res)
  local lines = { string.format('kloop: replayed #%d %s %s to pid %d: %d', res.request.id, res.request.method, res.request.target, res.pid or 0, res.response.status) }
  if res.same then
    lines[1] = lines[1] .. ', same answer as recorded'
  end
  for _, d in ipairs(res.diff or {}) do
    table.insert(lines, '  ' .. d)
  end
  M._last_replay = lines
  vim.api.nvim_echo({ { table.concat(lines, '\n') } }, true, {})
  if not res.same then
    M.show_replay_diff(res)
  end
end

-- Headers that change by themselves or describe the transfer: left out of
-- the diff, as kloop's comparison does.
local skipped_headers = { date = true, ['content-length'] = true, connection = true, ['keep-alive'] = true,
  ['transfer-encoding'] = true, age = true, expires = true, ['last-modified'] = true, etag = true }

-- pretty renders a decoded JSON value indented, keys sorted, so a diff
-- shows the changed fields.
local function pretty(v, indent, out, prefix)
  local pad = string.rep('  ', indent)
  local function emit(s) table.insert(out, s) end
  if type(v) == 'table' and not (vim.islist or vim.tbl_islist)(v) then
    local keys = vim.tbl_keys(v)
    table.sort(keys)
    if #keys == 0 then emit(pad .. prefix .. '{}') return end
    emit(pad .. prefix .. '{')
    for i, k in ipairs(keys) do
      local sub = {}
      pretty(v[k], indent + 1, sub, vim.json.encode(k) .. ': ')
      if i < #keys then sub[#sub] = sub[#sub] .. ',' end
      vim.list_extend(out, sub)
    end
    emit(pad .. '}')
  elseif type(v) == 'table' then
    if #v == 0 then emit(pad .. prefix .. '[]') return end
    emit(pad .. prefix .. '[')
    for i, x in ipairs(v) do
      local sub = {}
      pretty(x, indent + 1, sub, '')
      if i < #v then sub[#sub] = sub[#sub] .. ',' end
      vim.list_extend(out, sub)
    end
    emit(pad .. ']')
  elseif v == vim.NIL or v == nil then
    emit(pad .. prefix .. 'null')
  else
    emit(pad .. prefix .. vim.json.encode(v))
  end
end

-- answer_lines renders an answer for the diff: status, headers sorted,
-- and the body (indented when it is JSON).
function M._answer_lines(a)
  if not a then
    return { '(no answer was recorded)' }
  end
  local lines = { 'HTTP ' .. tostring(a.status) }
  local names = vim.tbl_keys(a.header or {})
  table.sort(names)
  for _, name in ipairs(names) do
    if not skipped_headers[name:lower()] then
      for _, v in ipairs(a.header[name]) do
        table.insert(lines, name .. ': ' .. v)
      end
    end
  end
  table.insert(lines, '')
  local body = a.body or ''
  local ok, decoded = pcall(vim.json.decode, body)
  if ok and body:match('%S') and type(decoded) == 'table' then
    pretty(decoded, 0, lines, '')
  else
    vim.list_extend(lines, vim.split((body:gsub('\n$', '')), '\n', true))
  end
  if a.bodyTruncated then
    table.insert(lines, '… (only the first 64 KiB were kept)')
  end
  return lines
end

-- scratch fills the current window's new buffer with lines, read-only.
local function scratch(name, lines)
  local buf = vim.api.nvim_get_current_buf()
  vim.api.nvim_buf_set_lines(buf, 0, -1, false, lines)
  vim.bo[buf].buftype = 'nofile'
  vim.bo[buf].bufhidden = 'wipe'
  vim.bo[buf].swapfile = false
  vim.bo[buf].modifiable = false
  pcall(vim.api.nvim_buf_set_name, buf, name)
  vim.cmd('diffthis')
  return buf
end

-- show_replay_diff opens a new tab with the recorded answer (left) and the
-- replayed one (right) in scratch buffers, diffed.
function M.show_replay_diff(res)
  local id = res.request.id
  M._replays = (M._replays or 0) + 1
  vim.cmd('tabnew')
  local left = scratch(string.format('kloop-replay://%d/%d/recorded (pid %s)', id, M._replays, tostring(res.request.pid or '?')), M._answer_lines(res.request.response))
  vim.cmd('rightbelow vnew')
  local right = scratch(string.format('kloop-replay://%d/%d/replayed (pid %s)', id, M._replays, tostring(res.pid or '?')), M._answer_lines(res.response))
  return left, right
end

-- debug_intercept runs a `kloop` nvim-dap session for a lens's arguments;
-- false when nvim-dap is not installed.
function M.debug_intercept(arg)
  local ok, dap = pcall(require, 'dap')
  if not ok or not M.config.dap then
    return false
  end
  if not dap.adapters.kloop then
    M.setup_dap(dap)
  end
  local cfg = { type = 'kloop', request = 'launch', name = 'kloop: intercept ' .. arg.workload, workload = arg.workload, program = arg.program }
  if arg.port then cfg.port = arg.port end
  if arg.header then cfg.header = arg.header end
  dap.run(cfg)
  return true
end

-- dap_type_to_filetypes maps launch.json's "type": "kloop" onto Go buffers,
-- for nvim-dap's require('dap.ext.vscode').load_launchjs(nil, ...).
M.dap_type_to_filetypes = { kloop = { 'go' } }

-- setup_dap registers the `kloop` adapter and a Go configuration in nvim-dap.
function M.setup_dap(dap)
  -- Newer nvim-dap reads .vscode/launch.json by itself through this table;
  -- 0.6.0 takes the mapping as load_launchjs's second argument only.
  local ok, vscode = pcall(require, 'dap.ext.vscode')
  if ok and type(vscode) == 'table' then
    vscode.type_to_filetypes = vscode.type_to_filetypes or {}
    vscode.type_to_filetypes.kloop = vim.deepcopy(M.dap_type_to_filetypes.kloop)
  end
  dap.adapters.kloop = {
    type = 'executable',
    command = M.config.cmd,
    args = { 'dap' },
    options = { source_filetype = 'go' },
  }
  dap.configurations.go = dap.configurations.go or {}
  for _, c in ipairs(dap.configurations.go) do
    if c.type == 'kloop' then
      return
    end
  end
  table.insert(dap.configurations.go, {
    type = 'kloop',
    request = 'launch',
    name = 'kloop: intercept & debug',
    workload = function()
      return vim.fn.input('Workload: ', 'deployment/' .. vim.fn.expand('%:p:h:t'))
    end,
    program = './${relativeFileDirname}',
  })
  table.insert(dap.configurations.go, {
    type = 'kloop',
    request = 'launch',
    name = 'kloop: debug locally (no cluster)',
    program = './${relativeFileDirname}',
  })
end

function M.setup(opts)
  M.config = vim.tbl_deep_extend('force', vim.deepcopy(M.defaults), opts or {})
  create_commands()
  local group = api.nvim_create_augroup('kloop', { clear = true })
  api.nvim_create_autocmd('FileType', {
    group = group,
    pattern = M.config.filetypes,
    callback = function(ev)
      M.attach(ev.buf)
    end,
  })
  -- Buffers opened before setup().
  for _, b in ipairs(api.nvim_list_bufs()) do
    if api.nvim_buf_is_loaded(b) and vim.tbl_contains(M.config.filetypes, vim.bo[b].filetype) then
      M.attach(b)
    end
  end
  if M.config.dap then
    local ok, dap = pcall(require, 'dap')
    if ok then
      M.setup_dap(dap)
    end
  end
end

return M
