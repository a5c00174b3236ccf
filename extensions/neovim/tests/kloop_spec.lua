-- The plugin against the real kloop: `kloop lsp` through a private daemon,
-- on a copy of the sample orders service (test/testdata).
local T = _G.T
local api = vim.api
local here = vim.fn.fnamemodify(debug.getinfo(1, 'S').source:sub(2), ':p:h')
local repo = vim.fn.fnamemodify(here, ':h:h:h')

local ws = T.tmp .. '/shop'
local main = ws .. '/cmd/orders/main.go'
local manifest = ws .. '/deploy/orders.yaml'
vim.fn.mkdir(ws .. '/cmd/orders', 'p')
vim.fn.mkdir(ws .. '/deploy', 'p')
vim.fn.writefile({ 'module example.com/shop', '', 'go 1.22' }, ws .. '/go.mod')
vim.fn.writefile(vim.fn.readfile(repo .. '/test/testdata/orders/main.go'), main)
vim.fn.writefile(vim.fn.readfile(repo .. '/test/testdata/orders.yaml'), manifest)

local function line_of(file, pat)
  for i, l in ipairs(vim.fn.readfile(file)) do
    if l:find(pat) then
      return i - 1
    end
  end
  error(pat .. ' not in ' .. file)
end

local kloop = require('kloop')
local client_id

local function client()
  return vim.lsp.get_client_by_id(client_id)
end

-- lens_texts is what the user sees: the virtual text of code lenses on a line
-- (of the workspace's first client unless id names another).
local function lens_texts(bufnr, line, id)
  local ns = api.nvim_create_namespace('vim_lsp_codelens:' .. (id or client_id))
  local texts = {}
  for _, m in ipairs(api.nvim_buf_get_extmarks(bufnr, ns, { line, 0 }, { line, -1 }, { details = true })) do
    for _, chunk in ipairs(m[4].virt_text or {}) do
      if vim.trim(chunk[1]) ~= '|' and vim.trim(chunk[1]) ~= '' then
        table.insert(texts, vim.trim(chunk[1]))
      end
    end
  end
  return texts
end

local function last_error()
  for i = #T.notes, 1, -1 do
    if T.notes[i].level == vim.log.levels.ERROR then
      return T.notes[i].msg
    end
  end
end

local function run_and_wait_error(cmd, what)
  local before = #T.notes
  vim.cmd(cmd)
  T.wait(10000, function()
    for i = before + 1, #T.notes do
      if T.notes[i].level == vim.log.levels.ERROR then return true end
    end
  end, what)
  return last_error()
end

return {
  { 'setup defines the user commands; the statusline is empty without kloop', function()
    kloop.setup({ cmd = T.bin })
    for _, c in ipairs({ 'KloopClaim', 'KloopRelease', 'KloopIntercept', 'KloopLeave', 'KloopStatus', 'KloopRelaunch', 'KloopEnv', 'KloopLogs', 'KloopRequests', 'KloopReplay' }) do
      T.eq(2, vim.fn.exists(':' .. c), ':' .. c .. ' exists')
    end
    T.eq('', kloop.statusline(), 'statusline before any kloop buffer')
  end },

  { ':KloopIntercept takes the rule as kloop intercept spells it', function()
    local a = assert(kloop._parse_intercept({ 'orders', '--header', 'x-dev=me', '--header', 'x-team=pay', '--path', '/api/',
      '--path-regex', '^/v[0-9]+/', '--method', 'GET,POST', '--method', 'PUT', '--match', 'any' }))
    T.eq('me', a.header['x-dev'], 'first header')
    T.eq('pay', a.header['x-team'], 'second header')
    T.eq('/api/', a.path, 'path')
    T.eq('^/v[0-9]+/', a.pathRegex, 'pathRegex')
    T.eq('GET,POST', a.method[1], 'method list')
    T.eq('PUT', a.method[2], 'repeated method')
    T.eq('any', a.match, 'match')
  end },
  { 'opening the orders main.go starts kloop lsp through the private daemon', function()
    vim.cmd('edit ' .. main)
    T.eq('go', vim.bo.filetype, 'filetype')
    -- Nothing arrived yet: the statusline says kloop is starting.
    T.eq('kloop …', kloop.statusline(), 'statusline right after opening')
    client_id = kloop.clients[ws]
    T.truthy(client_id, 'a kloop client for ' .. ws .. ' (clients: ' .. vim.inspect(kloop.clients) .. ')')
    T.wait(10000, function() return client() and client().initialized end, 'the client to initialize')
    T.eq('kloop', client().name, 'client name')
    T.eq(ws, client().config.root_dir, 'root_dir')
    T.eq('kloop', client().server_capabilities and (client().server_info or {}).name or 'kloop', 'server name')
    T.truthy((vim.loop or vim.uv).fs_stat(vim.env.KLOOP_SOCKET), 'the daemon listens on the private socket ' .. vim.env.KLOOP_SOCKET)
    if vim.lsp.start == nil then
      T.eq({ 'lsp' }, { client().config.cmd[2] }, 'cmd') -- 0.7 path: start_client
    end
    -- No nvim-dap here: kloop is told this Neovim starts no debug session.
    T.eq({ startsDebugSessions = false, extensionVersion = kloop.version }, client().config.init_options, 'initializationOptions sent')
  end },

  { 'kloop doctor names Neovim and the plugin version it sent', function()
    local rep
    kloop.execute('kloop.doctor', {}, function(res) rep = res end)
    T.wait(20000, function() return rep ~= nil end, 'the doctor report')
    local editor
    for _, f in ipairs(rep.findings) do
      if f.check == 'editor' then editor = f end
    end
    T.truthy(editor, 'an editor finding in ' .. vim.inspect(rep.findings))
    T.match(editor.detail, 'Neovim [%d.]+ %(kloop extension ' .. vim.pesc(kloop.version) .. '%)', 'editor finding')
  end },

  { 'the statusline changes when kloop/status arrives', function()
    local fired = false
    api.nvim_create_autocmd('User', { pattern = 'KloopStatus', once = true, callback = function() fired = true end })
    T.wait(10000, function() return kloop.statusline() == 'kloop: no claim' end, 'statusline "kloop: no claim", have ' .. vim.inspect(kloop.statusline()))
    T.truthy(fired or kloop.status[ws], 'User KloopStatus autocmd or stored status')
    vim.o.statusline = "%f %{v:lua.require'kloop'.statusline()}"
    vim.cmd('redrawstatus')
    T.eq(ws, kloop.status[ws].workspace, 'status workspace')
    -- A scratch buffer (no filetype) shows the only kloop session.
    vim.cmd('enew')
    T.eq('kloop: no claim', kloop.statusline(), 'statusline in a scratch buffer')
    vim.cmd('buffer #')
    T.eq('go', vim.bo.filetype, 'back in main.go')
  end },

  { 'a workload prompt falls back to vim.ui.input when kloop cannot list the workloads (here: no cluster)', function()
    local orig_input, orig_select = vim.ui.input, vim.ui.select
    local inputs, selects = {}, 0
    vim.ui.input = function(opts, on_confirm) table.insert(inputs, opts.prompt) on_confirm('deployment/orders') end
    vim.ui.select = function() selects = selects + 1 end
    local before = #T.notes
    vim.cmd('KloopEnv')
    T.wait(15000, function() return #inputs == 1 end, 'the input prompt after kloop.workloads failed')
    vim.ui.input, vim.ui.select = orig_input, orig_select
    T.eq({ 'Env of workload: ' }, inputs, 'prompted for a name')
    T.eq(0, selects, 'no picker without a list')
    local why
    for i = before + 1, #T.notes do
      if T.notes[i].msg:find('kloop.workloads', 1, true) then why = T.notes[i] end
    end
    T.truthy(why, 'a note saying why kloop.workloads failed, in ' .. vim.inspect(T.notes))
    T.eq(vim.log.levels.DEBUG, why.level, 'the failed listing is not an error the user must read')
    T.match(why.msg, 'type the workload instead', 'the note')
  end },

  { 'a workload prompt picks from kloop.workloads with vim.ui.select, showing replicas, ports and holders', function()
    local orig_exec, orig_select, orig_input = kloop.execute, vim.ui.select, vim.ui.input
    local listed = { namespace = 'dev-1', workloads = {
      { workload = 'deployment/orders', kind = 'deployment', name = 'orders', ready = 2, replicas = 2,
        ports = { { container = 'app', port = 8080, name = 'http', protocol = 'TCP' } } },
      { workload = 'statefulset/ledger', kind = 'statefulset', name = 'ledger', ready = 1, replicas = 1,
        ports = { { container = 'db', port = 5432, protocol = 'TCP' } },
        agent = { resident = true, holders = { { name = 'ana@laptop', rule = 'x-dev=ana' } } } },
    } }
    -- kloop.workloads answers as the daemon does on a cluster (the sandbox
    -- test in test/intercept checks that answer); the other commands are
    -- recorded, not sent.
    local sent = {}
    kloop.execute = function(command, args, on_result, bufnr, on_error)
      if command == 'kloop.workloads' then return on_result(listed) end
      table.insert(sent, { command, args })
    end
    local shown, picks = {}, { 2, 3 }
    vim.ui.select = function(items, opts, on_choice)
      shown = {}
      for _, it in ipairs(items) do table.insert(shown, opts.format_item(it)) end
      T.eq('Install a resident agent into: ', opts.prompt, 'picker prompt')
      on_choice(items[table.remove(picks, 1)])
    end
    vim.ui.input = function(_, on_confirm) on_confirm('payments') end
    local ok, err = pcall(function()
      vim.cmd('KloopAgentInstall')
      T.eq({
        'deployment/orders  2/2 ready  ports 8080(http)',
        'statefulset/ledger  1/1 ready  ports 5432  [resident agent; intercepted by ana@laptop (x-dev=ana)]',
        'Type a workload name...',
      }, shown, 'picker lines')
      -- The last row asks for a name the list does not have.
      vim.cmd('KloopAgentInstall')
      T.eq({ { 'kloop.agent.install', { workload = 'statefulset/ledger' } }, { 'kloop.agent.install', { workload = 'payments' } } }, sent, 'commands sent')
    end)
    kloop.execute, vim.ui.select, vim.ui.input = orig_exec, orig_select, orig_input
    if not ok then error(err, 0) end
  end },

  { 'the statusline shows kloop\'s $/progress while kloop doctor runs and drops it at the end', function()
    local seen = {}
    local au = api.nvim_create_autocmd('User', { pattern = 'KloopProgress', callback = function()
      table.insert(seen, kloop.statusline())
    end })
    local rep
    kloop.execute('kloop.doctor', {}, function(res) rep = res end)
    T.wait(20000, function() return rep ~= nil end, 'the doctor report')
    api.nvim_del_autocmd(au)
    T.eq({
      "kloop: no claim · Checking kloop's setup",
      "kloop: no claim · Checking kloop's setup: checking the cluster 10%",
      "kloop: no claim · Checking kloop's setup: checking the daemon 90%",
      'kloop: no claim',
    }, seen, 'statusline at each $/progress of kloop lsp')
    T.eq('kloop: no claim', kloop.statusline(), 'statusline after the doctor')
    T.eq({}, kloop.progress[ws].order, 'nothing in flight')
  end },

  { 'of two $/progress in flight the statusline shows the newest, then the older once the newest ends', function()
    local h = client().config.handlers['$/progress']
    local function send(token, value)
      h(nil, { token = token, value = value }, { client_id = client_id, method = '$/progress' })
    end
    send('a', { kind = 'begin', title = 'Claiming a dev namespace', percentage = 0 })
    T.eq('kloop: no claim · Claiming a dev namespace 0%', kloop.statusline(), 'first begin')
    send(7, { kind = 'begin', title = 'Building ./cmd/orders' })
    send(7, { kind = 'report', message = 'compiling', percentage = 40 })
    T.eq('kloop: no claim · Building ./cmd/orders: compiling 40%', kloop.statusline(), 'newest report')
    send('a', { kind = 'report', message = 'waiting for a free slot', percentage = 50 })
    send(7, { kind = 'end', message = 'done' })
    T.eq('kloop: no claim · Claiming a dev namespace: waiting for a free slot 50%', kloop.statusline(), 'older one after the newest ended')
    send('a', { kind = 'end', message = 'failed: pool dev is empty' })
    T.eq('kloop: no claim', kloop.statusline(), 'all ended')
  end },

  { 'without nvim-dap, func main of the orders main.go gets "& run" only', function()
    local bufnr = api.nvim_get_current_buf()
    local line = line_of(main, '^func main%(%)')
    vim.lsp.codelens.refresh()
    T.wait(10000, function() return #lens_texts(bufnr, line) >= 1 end, 'lens virtual text on line ' .. line)
    T.eq({ 'Intercept deployment/orders & run' }, lens_texts(bufnr, line), 'lenses shown')
    local lenses = vim.lsp.codelens.get(bufnr)
    T.eq(1, #lenses, 'lens count')
    T.eq('kloop.intercept', lenses[1].command.command, 'lens command')
    T.eq({ workload = 'deployment/orders', program = './cmd/orders' }, lenses[1].command.arguments[1], 'lens arguments')
  end },

  { 'running "& run" asks kloop and shows its answer', function()
    local line = line_of(main, '^func main%(%)')
    api.nvim_win_set_cursor(0, { line + 1, 0 })
    local before = #T.notes
    vim.lsp.codelens.run()
    T.wait(10000, function() return #T.notes > before end, 'kloop\'s answer to "Intercept deployment/orders & run"')
    T.match(T.notes[#T.notes].msg, '^kloop: ', 'answer')
    -- The lens is drawn again after running it.
    T.wait(5000, function() return #lens_texts(api.nvim_get_current_buf(), line) == 1 end, 'lens back')
  end },

  { 'a "& debug" lens run without nvim-dap says that nvim-dap is missing', function()
    local before = #T.notes
    client().config.commands['kloop.intercept']({ title = 'Intercept deployment/orders & debug', command = 'kloop.intercept',
      arguments = { { workload = 'deployment/orders', program = './cmd/orders', debug = true } } }, { bufnr = api.nvim_get_current_buf() })
    T.eq(before + 1, #T.notes, 'one message')
    T.eq(vim.log.levels.ERROR, T.notes[#T.notes].level, 'level')
    T.match(T.notes[#T.notes].msg, '^kloop: "& debug" needs nvim%-dap', 'message')
  end },

  { 'with nvim-dap present, a workspace is offered "& debug", which starts an nvim-dap session; "& run" asks kloop', function()
    local ws3 = T.tmp .. '/shop3'
    vim.fn.mkdir(ws3 .. '/cmd/orders', 'p')
    vim.fn.writefile({ 'module example.com/shop3', '', 'go 1.22' }, ws3 .. '/go.mod')
    vim.fn.writefile(vim.fn.readfile(main), ws3 .. '/cmd/orders/main.go')
    local ran = {}
    package.loaded.dap = { adapters = {}, configurations = {}, run = function(cfg) table.insert(ran, cfg) end }
    vim.cmd('edit ' .. ws3 .. '/cmd/orders/main.go')
    local id = kloop.clients[ws3]
    T.truthy(id and id ~= client_id, 'a client for the workspace')
    T.wait(10000, function() local c = vim.lsp.get_client_by_id(id) return c and c.initialized end, 'the client to initialize')
    T.eq({ startsDebugSessions = true, extensionVersion = kloop.version }, vim.lsp.get_client_by_id(id).config.init_options, 'initializationOptions sent')
    local bufnr = api.nvim_get_current_buf()
    local line = line_of(main, '^func main%(%)')
    vim.lsp.codelens.refresh()
    T.wait(10000, function() return #lens_texts(bufnr, line, id) >= 2 end, 'lens virtual text on line ' .. line)
    T.eq({ 'Intercept deployment/orders & debug', 'Intercept & run' }, lens_texts(bufnr, line, id), 'lenses shown')
    T.eq({ workload = 'deployment/orders', program = './cmd/orders', debug = true }, vim.lsp.codelens.get(bufnr)[1].command.arguments[1], 'debug lens arguments')
    api.nvim_win_set_cursor(0, { line + 1, 0 })
    local orig = vim.ui.select
    local pick = 1
    local titles
    vim.ui.select = function(items, opts, on_choice)
      titles = vim.tbl_map(function(it) return (opts.format_item or tostring)(it) end, items)
      on_choice(items[pick], pick)
    end
    vim.lsp.codelens.run()
    T.wait(5000, function() return #ran == 1 end, 'dap.run')
    T.eq({ 'Intercept deployment/orders & debug', 'Intercept & run' }, titles, 'the lens menu')
    T.eq({ type = 'kloop', request = 'launch', name = 'kloop: intercept deployment/orders', workload = 'deployment/orders', program = './cmd/orders' }, ran[1], 'debug config')
    T.eq(T.bin, package.loaded.dap.adapters.kloop.command, 'adapter registered on the way')
    T.wait(5000, function() return #lens_texts(bufnr, line, id) == 2 end, 'lenses back after debugging')
    local before = #T.notes
    pick = 2
    vim.lsp.codelens.run()
    vim.ui.select = orig
    T.wait(10000, function() return #T.notes > before end, 'kloop\'s answer to "Intercept & run"')
    T.match(T.notes[#T.notes].msg, '^kloop: ', 'answer')
    T.eq(1, #ran, 'dap.run calls after "& run"')
    package.loaded.dap = nil
    vim.lsp.get_client_by_id(id).stop()
    T.wait(5000, function() return kloop.clients[ws3] == nil end, 'the client to go away')
    vim.cmd('edit ' .. main)
    T.eq(ws, kloop.root_of(api.nvim_buf_get_name(0)), 'back in the first workspace')
  end },

  { 'code actions on func main offer claim, intercept and env; picking claim shows kloop\'s answer', function()
    local line = line_of(main, '^func main%(%)')
    api.nvim_win_set_cursor(0, { line + 1, 0 })
    local offered
    local orig = vim.ui.select
    vim.ui.select = function(items, opts, on_choice)
      offered = { items = items, opts = opts, on_choice = on_choice }
    end
    vim.lsp.buf.code_action()
    T.wait(10000, function() return offered ~= nil end, 'the code action menu')
    vim.ui.select = orig
    local kinds, claim = {}, nil
    for _, it in ipairs(offered.items) do
      local action = it[2] or it.action
      kinds[action.kind] = action.command and action.command.command
      if action.kind == 'source.kloop.claim' then claim = it end
    end
    T.eq('kloop.claim', kinds['source.kloop.claim'], 'claim action')
    T.eq('kloop.intercept', kinds['source.kloop.intercept'], 'intercept action')
    T.eq('kloop.env', kinds['source.kloop.env'], 'env action')
    local before = #T.notes
    offered.on_choice(claim, 1)
    T.wait(15000, function()
      for i = before + 1, #T.notes do
        if T.notes[i].msg:find('claim') then return true end
      end
    end, 'an answer to the claim')
    local msg = T.notes[#T.notes].msg
    T.match(msg, '^kloop: ', 'claim answer')
  end },

  { 'the orders manifest gets "Intercept this workload" above the Deployment, same client', function()
    vim.cmd('edit ' .. manifest)
    local bufnr = api.nvim_get_current_buf()
    T.wait(10000, function() return #vim.lsp.codelens.get(bufnr) > 0 end, 'lenses on the manifest')
    local lenses = vim.lsp.codelens.get(bufnr)
    T.eq(1, #lenses, 'one workload in the manifest')
    T.eq('Intercept this workload', lenses[1].command.title, 'title')
    T.eq('deployment/orders', lenses[1].command.arguments[1].workload, 'workload')
    T.truthy(lenses[1].range.start.line > line_of(manifest, '^kind: Secret'), 'lens after the Secret')
    T.eq(client_id, kloop.clients[ws], 'the manifest shares the workspace client')
    T.eq(1, #vim.lsp.get_active_clients(), 'one kloop client')
    T.wait(5000, function() return #lens_texts(bufnr, lenses[1].range.start.line) == 1 end, 'lens shown')
  end },

  { ':KloopStatus runs and reports the workspace', function()
    vim.cmd('edit ' .. main)
    local before = #T.notes
    vim.cmd('KloopStatus')
    T.wait(10000, function() return #T.notes > before end, 'the status report')
    local msg = T.notes[#T.notes].msg
    T.eq(vim.log.levels.INFO, T.notes[#T.notes].level, 'level')
    T.match(msg, '^kloop: no claim\n', 'report')
    T.match(msg, 'workspace: ' .. vim.pesc(ws), 'report')
  end },

  { ':KloopIntercept shows kloop\'s own errors', function()
    T.match(run_and_wait_error('KloopIntercept pod/orders', 'a validation error'), 'kind must be deployment or statefulset', 'pod/orders')
    T.match(run_and_wait_error('KloopIntercept orders --port 99999', 'a port error'), '99999', 'bad port')
    T.match(run_and_wait_error('KloopIntercept orders --bogus', 'a usage error'), 'unknown flag %-%-bogus', 'unknown flag')
    T.match(run_and_wait_error('KloopIntercept orders', 'the intercept answer'), '^kloop: .*intercept', 'orders')
  end },

  { ':KloopRequests and :KloopReplay answer from the daemon before any request was recorded', function()
    vim.cmd('edit ' .. main)
    local before = #T.notes
    vim.cmd('KloopRequests')
    T.wait(10000, function() return #T.notes > before end, 'the requests answer')
    T.eq('kloop: no requests recorded yet; they are recorded while a workload is intercepted', T.notes[#T.notes].msg, ':KloopRequests')
    T.match(run_and_wait_error('KloopReplay', 'the replay answer'), 'no request has reached your process through an intercept yet', ':KloopReplay')
    T.match(run_and_wait_error('KloopReplay 7', 'the replay answer'), 'request 7 is not among the last 50', ':KloopReplay 7')
  end },

  { ':KloopExport answers from the daemon before any request was recorded', function()
    vim.cmd('edit ' .. main)
    local before = #T.notes
    vim.cmd('KloopExport')
    T.wait(10000, function() return #T.notes > before end, 'the requests answer')
    T.eq('kloop: no requests recorded yet; they are recorded while a workload is intercepted', T.notes[#T.notes].msg, ':KloopExport')
    T.match(run_and_wait_error('KloopExport 7', 'the export answer'), 'request 7 is not among the last 50', ':KloopExport 7')
  end },

  { 'a replay whose answer changed opens a diff split of the two answers in a new tab', function()
    local tabs = #api.nvim_list_tabpages()
    local res = {
      request = { id = 4, workload = 'deployment/orders', method = 'GET', target = '/orders/1', pid = 10,
        response = { status = 200, header = { ['Content-Type'] = { 'application/json' }, Date = { 'Mon' } }, body = '{"order":{"id":"1"},"build":"v1"}' } },
      response = { status = 200, header = { ['Content-Type'] = { 'application/json' }, Date = { 'Tue' } }, body = '{"build":"v2","order":{"id":"1"}}' },
      pid = 11, same = false, diff = { '$.build: "v1" → "v2"' },
    }
    kloop._replay_result(res)
    T.eq(tabs + 1, #api.nvim_list_tabpages(), 'tab pages')
    local wins = api.nvim_tabpage_list_wins(0)
    T.eq(2, #wins, 'windows in the new tab')
    local want = function(build)
      return { 'HTTP 200', 'Content-Type: application/json', '', '{', '  "build": "' .. build .. '",', '  "order": {', '    "id": "1"', '  }', '}' }
    end
    for i, build in ipairs({ 'v1', 'v2' }) do
      local buf = api.nvim_win_get_buf(wins[i])
      T.eq(want(build), api.nvim_buf_get_lines(buf, 0, -1, false), 'window ' .. i .. ' lines')
      T.eq(true, api.nvim_win_get_option(wins[i], 'diff'), 'window ' .. i .. ' in diff mode')
      T.eq('nofile', api.nvim_buf_get_option(buf, 'buftype'), 'window ' .. i .. ' is a scratch buffer')
      T.eq(false, api.nvim_buf_get_option(buf, 'modifiable'), 'window ' .. i .. ' read-only')
    end
    T.match(api.nvim_buf_get_name(api.nvim_win_get_buf(wins[1])), 'recorded %(pid 10%)$', 'left is the recorded answer')
    T.match(api.nvim_buf_get_name(api.nvim_win_get_buf(wins[2])), 'replayed %(pid 11%)$', 'right is the replayed answer')
    vim.cmd('tabclose')

    -- The same answer opens nothing.
    res.same, res.diff = true, nil
    kloop._replay_result(res)
    T.eq(tabs, #api.nvim_list_tabpages(), 'tab pages after a replay with the same answer')
  end },

  { ':KloopLeave, :KloopRelaunch and :KloopClaim each get an answer', function()
    for _, c in ipairs({ 'KloopLeave', 'KloopRelaunch', 'KloopClaim dev 2h' }) do
      local before = #T.notes
      vim.cmd(c)
      T.wait(15000, function() return #T.notes > before end, 'an answer to :' .. c)
      T.match(T.notes[#T.notes].msg, '^kloop: ', ':' .. c)
    end
  end },

  { 'the statusline shows claim, intercept requests and relaunch time from a kloop/status', function()
    local handler = client().config.handlers['kloop/status']
    local saved = kloop.status[ws]
    handler(nil, {
      workspace = ws,
      claim = { pool = 'dev', slot = 'dev-3', namespace = 'dev-3', holder = 'me@box', ['until'] = '2099-01-01T00:00:00Z', kubeconfig = '/k' },
      intercepts = { { workload = 'deployment/orders', ports = { '8080' }, requests = 12, state = 'active' } },
      lastBuild = { ok = true, millis = 800, at = '', errors = 0 },
      lastRelaunchMillis = 420,
      updated = '',
    }, { client_id = client_id, method = 'kloop/status' })
    T.eq('kloop: dev-3 ⇄ orders 12 req ↻ 420ms', kloop.statusline(), 'busy statusline')
    handler(nil, { workspace = ws, intercepts = vim.NIL, lastBuild = { ok = false, millis = 1, at = '', errors = 2 }, updated = '' },
      { client_id = client_id, method = 'kloop/status' })
    T.eq('kloop: no claim ✗ build failed', kloop.statusline(), 'failed build')
    handler(nil, saved, { client_id = client_id, method = 'kloop/status' })
    T.eq('kloop: no claim', kloop.statusline(), 'restored')
  end },

  { 'kloop\'s warnings reach vim.notify at WARN; :KloopStatus shows an intercept\'s notice', function()
    local warning = 'orders is intercepted for debugging but no debugger is attached: its traffic comes to this machine and nothing answers it.'
    client().config.handlers['window/showMessage'](nil, { type = 2, message = 'kloop: ' .. warning }, { client_id = client_id, method = 'window/showMessage' })
    T.eq({ msg = 'kloop: ' .. warning, level = vim.log.levels.WARN }, T.notes[#T.notes], 'the warning')
    local saved = kloop.status[ws]
    kloop._show_status({ workspace = ws, intercepts = { { workload = 'deployment/orders', ports = { '8080->8080' }, requests = 0, state = 'waiting for a debugger', notice = warning } }, updated = '' })
    T.match(T.notes[#T.notes].msg, '\nintercept: deployment/orders ports 8080%->8080, 0 requests, waiting for a debugger\n  warning: ' .. vim.pesc(warning), ':KloopStatus report')
    kloop.status[ws] = saved
  end },

  { 'with nvim-dap present, setup registers a `kloop dap` adapter that answers DAP', function()
    local fake = { adapters = {}, configurations = {} }
    package.loaded.dap = fake
    kloop.setup({ cmd = T.bin })
    package.loaded.dap = nil
    local a = fake.adapters.kloop
    T.eq('executable', a.type, 'adapter type')
    T.eq({ T.bin, 'dap' }, { a.command, a.args[1] }, 'adapter command')
    local names = {}
    for _, c in ipairs(fake.configurations.go) do names[#names + 1] = c.name .. ':' .. c.type end
    T.eq({ 'kloop: intercept & debug:kloop', 'kloop: debug locally (no cluster):kloop' }, names, 'configurations')
    T.eq('function', type(fake.configurations.go[1].workload), 'workload is asked for')
    -- Speak DAP to the adapter exactly as nvim-dap would spawn it.
    local buf = ''
    local job = vim.fn.jobstart(vim.list_extend({ a.command }, a.args), {
      cwd = ws,
      on_stdout = function(_, data) buf = buf .. table.concat(data, '\n') end,
    })
    T.truthy(job > 0, 'adapter started')
    local body = vim.fn.json_encode({ seq = 1, type = 'request', command = 'initialize', arguments = { adapterID = 'kloop', clientID = 'neovim', linesStartAt1 = true, columnsStartAt1 = true, pathFormat = 'path' } })
    vim.fn.chansend(job, 'Content-Length: ' .. #body .. '\r\n\r\n' .. body)
    T.wait(10000, function() return buf:find('"command":"initialize"') ~= nil end, 'the initialize response, have ' .. buf)
    T.match(buf, '"supportsConfigurationDoneRequest":true', 'capabilities')
    vim.fn.jobstop(job)
  end },
  { 'setup{ standalone = true } serves a new workspace from `kloop lsp --standalone`, lenses included', function()
    local ws2 = T.tmp .. '/shop2'
    vim.fn.mkdir(ws2 .. '/cmd/orders', 'p')
    vim.fn.writefile({ 'module example.com/shop2', '', 'go 1.22' }, ws2 .. '/go.mod')
    vim.fn.writefile(vim.fn.readfile(main), ws2 .. '/cmd/orders/main.go')
    kloop.setup({ cmd = T.bin, standalone = true })
    vim.cmd('edit ' .. ws2 .. '/cmd/orders/main.go')
    local id = kloop.clients[ws2]
    T.truthy(id and id ~= client_id, 'a second client for the second workspace')
    T.wait(10000, function() local c = vim.lsp.get_client_by_id(id) return c and c.initialized end, 'the standalone client')
    T.eq({ T.bin, 'lsp', '--standalone' }, vim.lsp.get_client_by_id(id).config.cmd, 'cmd')
    local bufnr = api.nvim_get_current_buf()
    vim.lsp.codelens.refresh()
    T.wait(10000, function() return #vim.lsp.codelens.get(bufnr) == 1 end, 'the lens from the standalone server')
    T.wait(10000, function() return kloop.statusline() == 'kloop: no claim' end, 'its statusline')
    vim.lsp.get_client_by_id(id).stop()
    T.wait(5000, function() return kloop.clients[ws2] == nil end, 'the client to go away')
    T.eq('', kloop.statusline(), 'statusline once the server is gone')
  end },
}
