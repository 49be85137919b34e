-- wrk script for bench/herd.py.
--
--   wrk ... -s bench/herd.lua <url> -- <mode> [tokens_file sale_id]
--
-- mode "get": plain GET of the URL's path (the trivial endpoint).
-- mode "purchase": POST /api/v1/flashsales/purchase {"saleId": sale_id, "quantity": 1}, each
-- request with the next token of tokens_file (one per line), so the herd spreads over many users.
-- Every response is counted by status and error code; done() prints one JSON line for herd.py.

local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("thread_index", counter)
  table.insert(threads, thread)
end

local requests = {}
local next_request = 1
counts = {}

function init(args)
  local mode = args[1] or "get"
  if mode == "purchase" then
    local tokens_file, sale_id = args[2], args[3]
    local body = '{"saleId": ' .. sale_id .. ', "quantity": 1}'
    for token in io.lines(tokens_file) do
      requests[#requests + 1] = wrk.format("POST", "/api/v1/flashsales/purchase", {
        ["Authorization"] = "Token " .. token,
        ["Content-Type"] = "application/json",
      }, body)
    end
    -- Threads start at different users so they do not march over the same tokens in step.
    next_request = ((thread_index - 1) * 997) % #requests + 1
  else
    requests[1] = wrk.format("GET", wrk.path)
  end
end

function request()
  local r = requests[next_request]
  next_request = next_request + 1
  if next_request > #requests then next_request = 1 end
  return r
end

function response(status, headers, body)
  local key = tostring(status)
  if status == 409 and body then
    local code = string.match(body, '"code"%s*:%s*"([%w_]+)"')
    if code then key = key .. ":" .. code end
  end
  counts[key] = (counts[key] or 0) + 1
end

function done(summary, latency, requests_stats)
  local merged = {}
  for _, thread in ipairs(threads) do
    local c = thread:get("counts") or {}
    for k, v in pairs(c) do merged[k] = (merged[k] or 0) + v end
  end
  local parts = {}
  for k, v in pairs(merged) do parts[#parts + 1] = string.format('"%s": %d', k, v) end
  io.write(string.format(
    'WRKJSON {"duration_us": %d, "requests": %d, "connect_errors": %d, "read_errors": %d, '
      .. '"write_errors": %d, "timeouts": %d, "status_errors": %d, '
      .. '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "counts": {%s}}\n',
    summary.duration, summary.requests, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.timeout, summary.errors.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    table.concat(parts, ", ")))
end
