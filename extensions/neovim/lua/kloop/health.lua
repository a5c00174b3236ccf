-- :checkhealth kloop — what the plugin needs and what it found: the kloop
-- binary and its version, whether kloop's daemon answers, nvim-dap, Neovim.
local M = {}

-- report picks the health API of this Neovim: vim.health.start/ok/... on
-- 0.10+, vim.health.report_* on 0.8 and 0.9, health#report_* on 0.7.
local function reporter()
  local h = vim.health
  if h and h.start then
    return { start = h.start, ok = h.ok, warn = h.warn, error = h.error, info = h.info }
  end
  if h and h.report_start then
    return { start = h.report_start, ok = h.report_ok, warn = h.report_warn, error = h.report_error, info = h.report_info }
  end
  local function fn(name)
    return function(msg, advice)
      if advice ~= nil then
        vim.fn['health#report_' .. name](msg, advice)
      else
        vim.fn['health#report_' .. name](msg)
      end
    end
  end
  return { start = fn('start'), ok = fn('ok'), warn = fn('warn'), error = fn('error'), info = fn('info') }
end

-- run starts argv and waits for it; a daemon that hangs must not hang
-- :checkhealth, so after timeout_ms it is stopped and reported as such.
local function run(argv, cwd, timeout_ms)
  local out, err = {}, {}
  local ok, job = pcall(vim.fn.jobstart, argv, {
    cwd = cwd,
    stdout_buffered = true,
    stderr_buffered = true,
    on_stdout = function(_, d) out = d end,
    on_stderr = function(_, d) err = d end,
  })
  if not ok or job <= 0 then
    return nil, 'could not start ' .. argv[1] .. (ok and '' or (': ' .. tostring(job)))
  end
  local code = vim.fn.jobwait({ job }, timeout_ms)[1]
  if code == -1 then
    vim.fn.jobstop(job)
    return nil, string.format('%s did not answer within %d s', table.concat(argv, ' '), timeout_ms / 1000)
  end
  local stdout = vim.trim(table.concat(out, '\n'))
  local stderr = vim.trim(table.concat(err, '\n'))
  if code ~= 0 then
    return nil, stderr ~= '' and stderr or stdout, code
  end
  return stdout
end

local function neovim_version()
  local v = vim.version()
  return string.format('%d.%d.%d', v.major, v.minor, v.patch)
end

-- dap_pin is the nvim-dap release to install on this Neovim: each nvim-dap
-- release supports the last two Neovim releases of its time.
function M.dap_pin()
  if vim.fn.has('nvim-0.11') == 1 then
    return 'a current release'
  elseif vim.fn.has('nvim-0.10') == 1 then
    return 'a release from before it required Neovim 0.11'
  elseif vim.fn.has('nvim-0.8') == 1 then
    return '0.10.0, the last release for Neovim 0.9'
  end
  return '0.6.0, the last release for Neovim 0.7'
end

function M.check()
  local r = reporter()
  local kloop = require('kloop')
  local cfg = kloop.config

  r.start('kloop: binary')
  local exe = vim.fn.exepath(cfg.cmd)
  if vim.fn.executable(cfg.cmd) ~= 1 or exe == '' then
    r.error(string.format('kloop binary %q not found or not executable', cfg.cmd), {
      'install it: go install github.com/kloop/kloop/cmd/kloop@latest',
      'or pass its path: require("kloop").setup{ cmd = "/path/to/kloop" }',
    })
  else
    local out, err = run({ exe, 'version', '-o', 'json' }, nil, 10000)
    local okj, v = pcall(vim.fn.json_decode, out or '')
    if out and okj and type(v) == 'table' and v.version then
      r.ok(string.format('%s: kloop %s (%s, %s)', exe, v.version, v.go or '?', v.platform or '?'))
    else
      r.error(string.format('%s version failed: %s', exe, err or out or '?'), { 'check that ' .. exe .. ' is a kloop binary built for this machine' })
    end
  end

  r.start('kloop: daemon')
  if cfg.standalone then
    r.info('setup{ standalone = true }: each workspace is served by its own kloop lsp --standalone; no daemon is used')
  elseif exe ~= '' then
    -- kloop status starts the daemon when none answers, as kloop lsp does:
    -- an answer means editors and the CLI share it.
    -- :checkhealth runs in its own buffer: the workspace is the one of the
    -- buffer it was called from.
    local from = vim.fn.bufnr('#')
    local name = from > 0 and vim.bo[from].buftype == '' and vim.api.nvim_buf_get_name(from) or ''
    local root = name ~= '' and kloop.root_of(name) or vim.fn.getcwd()
    local out, err = run({ exe, 'status', '-o', 'json', '-w', root }, root, 20000)
    local okj, st = pcall(vim.fn.json_decode, out or '')
    if out and okj and type(st) == 'table' then
      local claim = (type(st.claim) == 'table') and ('claim ' .. (st.claim.namespace or st.claim.slot or '?')) or 'no claim'
      r.ok(string.format('the daemon answers (kloop status for %s: %s)', st.workspace or root, claim))
    else
      r.error('kloop status failed: ' .. (err or out or '?'), {
        'run kloop doctor in a terminal for the cause',
        'or use setup{ standalone = true } to serve without the daemon',
      })
    end
  end

  r.start('kloop: nvim-dap')
  local has_dap = pcall(require, 'dap')
  if not has_dap then
    local pin = M.dap_pin()
    r.warn('nvim-dap is not installed: the "Intercept … & debug" lens is not offered (only "& run") and no kloop debug configuration exists', {
      'install nvim-dap (' .. pin .. ') to debug intercepted workloads and local programs with Delve',
    })
  elseif not cfg.dap then
    r.warn('nvim-dap is installed but setup{ dap = false }: kloop registers no adapter and offers "& run" only')
  else
    local dap = require('dap')
    if dap.adapters and dap.adapters.kloop then
      r.ok('nvim-dap is installed; the kloop adapter runs ' .. tostring(dap.adapters.kloop.command) .. ' dap')
    else
      r.warn('nvim-dap is installed but no kloop adapter is registered', { 'call require("kloop").setup{} after nvim-dap is loaded' })
    end
  end

  r.start('kloop: Neovim')
  if vim.fn.has('nvim-0.7') ~= 1 then
    r.error('Neovim ' .. neovim_version() .. ' is too old: kloop needs 0.7.2 or later')
  else
    r.ok('Neovim ' .. neovim_version())
  end
end

return M
