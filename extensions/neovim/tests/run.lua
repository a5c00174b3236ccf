-- A small test runner for headless Neovim (no plenary):
--   KLOOP_BIN=/path/to/kloop nvim --headless -u NONE -i NONE \
--     --cmd 'set rtp^=extensions/neovim' -c 'luafile extensions/neovim/tests/run.lua'
-- Runs the tests of tests/*_spec.lua in order, prints one line each and
-- exits 0 only when all pass. Each spec file returns a list of
-- { name, fn }; fn raises to fail.
local here = vim.fn.fnamemodify(debug.getinfo(1, 'S').source:sub(2), ':p:h')

local function out(s)
  io.stdout:write(s .. '\n')
  io.stdout:flush()
end

local T = {}
_G.T = T

function T.wait(ms, cond, what)
  local ok = vim.wait(ms, cond, 20)
  if not ok then
    error(string.format('timed out after %dms waiting for %s', ms, what), 2)
  end
end

function T.eq(want, got, what)
  if not vim.deep_equal(want, got) then
    error(string.format('%s: want %s, got %s', what or 'value', vim.inspect(want), vim.inspect(got)), 2)
  end
end

function T.truthy(v, what)
  if not v then
    error(what or 'expected a true value', 2)
  end
  return v
end

function T.match(s, pat, what)
  if type(s) ~= 'string' or not s:find(pat) then
    error(string.format('%s: %s does not match %q', what or 'value', vim.inspect(s), pat), 2)
  end
end

-- Every vim.notify lands here as { msg, level }.
T.notes = {}
vim.notify = function(msg, level)
  table.insert(T.notes, { msg = msg, level = level or vim.log.levels.INFO })
end
function T.note_matching(pat, level)
  for _, n in ipairs(T.notes) do
    if n.msg:find(pat) and (level == nil or n.level == level) then
      return n
    end
  end
end

-- -u NONE leaves filetype detection off; every real config has it on.
vim.cmd('filetype on')

local bin = os.getenv('KLOOP_BIN')
if not bin or vim.fn.executable(bin) ~= 1 then
  out('not ok - KLOOP_BIN must name a built kloop binary (make test-editors builds one)')
  vim.cmd('cquit 2')
end
T.bin = vim.fn.fnamemodify(bin, ':p')

-- A private daemon for this run: its own socket and state directory.
T.tmp = vim.fn.trim(vim.fn.system({ 'mktemp', '-d', '/tmp/kloop-nvim-XXXXXX' }))
vim.env.KLOOP_SOCKET = T.tmp .. '/d/daemon.sock'
vim.env.KLOOP_STATE_DIR = T.tmp .. '/state'
-- Never reach a real cluster from a test: no kubeconfig.
vim.env.KUBECONFIG = T.tmp .. '/no-kubeconfig'
-- A -race kloop (make test-editors builds one), and every kloop it starts,
-- writes its race reports to T.tmp/race.PID; the run fails on any (below).
vim.env.GORACE = vim.fn.trim((os.getenv('GORACE') or '') .. ' log_path=' .. T.tmp .. '/race')

-- race_reports returns the race reports of this run's kloop processes: the
-- GORACE log files, and the daemon's logs (where a daemon started with a
-- GORACE of its own prints them); '' when there is none.
local function race_reports()
  local found = {}
  local files = vim.fn.glob(T.tmp .. '/race.*', false, true)
  vim.list_extend(files, vim.fn.glob(T.tmp .. '/state/daemon.log*', false, true))
  for _, f in ipairs(files) do
    local text = table.concat(vim.fn.readfile(f, 'b'), '\n')
    local i = text:find('WARNING: DATA RACE', 1, true)
    if i then
      table.insert(found, vim.fn.fnamemodify(f, ':t') .. ':\n' .. text:sub(i))
    end
  end
  return table.concat(found, '\n')
end

local failed, passed = 0, 0
local files = vim.fn.glob(here .. '/*_spec.lua', false, true)
table.sort(files)
for _, file in ipairs(files) do
  local ok, tests = pcall(dofile, file)
  if not ok then
    out('not ok - load ' .. file .. ': ' .. tostring(tests))
    failed = failed + 1
  else
    for _, t in ipairs(tests) do
      local start = vim.loop.hrtime()
      local tok, err = xpcall(t[2], debug.traceback)
      local ms = (vim.loop.hrtime() - start) / 1e6
      if tok then
        passed = passed + 1
        out(string.format('ok - %s (%.0fms)', t[1], ms))
      else
        failed = failed + 1
        out(string.format('not ok - %s (%.0fms)\n    %s', t[1], ms, tostring(err):gsub('\n', '\n    ')))
      end
    end
  end
end

-- Tear down: stop the clients, then the private daemon.
local all_clients = vim.lsp.get_clients or vim.lsp.get_active_clients
for _, c in pairs(all_clients()) do
  require('kloop').stop_client(c, true)
end
vim.wait(2000, function() return #all_clients() == 0 end, 50)
vim.fn.system({ T.bin, 'daemon', 'stop' })
local races = race_reports()
if races ~= '' then
  failed = failed + 1
  out('not ok - a kloop process reported a data race\n    ' .. races:gsub('\n', '\n    '))
end
vim.fn.delete(T.tmp, 'rf')
out(string.format('# %d passed, %d failed (Neovim %s)', passed, failed, tostring(vim.version().major) .. '.' .. vim.version().minor .. '.' .. vim.version().patch))
if os.getenv("KLOOP_NVIM_VERBOSE") then for _, n in ipairs(T.notes) do out("# note [" .. n.level .. "] " .. n.msg:gsub("\n", " | ")) end end
vim.cmd(failed == 0 and 'qall!' or 'cquit 1')
