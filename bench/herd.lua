-- wrk script for bench/herd.py.
--
--   wrk ... -s bench/herd.lua <url> -- <mode> [tokens_file sale_id]
--
-- mode "get": plain GET of the URL's path (the trivial endpoint).
-- mode "purchase": POST /api/v1/flashsales/purchase {"saleId": sale_id, "quantity": 1}, each
-- request with the next token of tokens_file (one per line), so the herd spreads over many users.
-- mode "hold" (args: tokens_file sale_id staff_token): the same purchases of a sale with holds; each
-- 201 queues the confirm of that purchase (POST /api/v1/purchases/<id>/confirm) as this thread's next
-- request, with the staff token, as a shop's payment back end confirms after the payment. (A thread's
-- answers arrive in the order of its connections, not of its requests, so a buyer's own token could
-- not be paired with its purchase here.)
-- mode "join" (args: tokens_file sale_id wrk_threads): POST /api/v1/flashsales/<sale_id>/queue, no body, each
-- request with the next token, so every request takes (or, on a second pass, reads) a different
-- buyer's place in the sale's waiting room.
-- mode "queue" (args: tokens_file sale_id wrk_threads): GET /api/v1/flashsales/<sale_id>/queue, the same way.
-- Every response is counted by status and error code; done() prints one JSON line for herd.py, with
-- how many requests were sent, so herd.py knows how many were still unanswered when wrk stopped.

local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("thread_index", counter)
  table.insert(threads, thread)
end

local requests = {}
local next_request = 1
local confirms = {}
local hold_mode = false
local staff_token = nil
counts = {}
sent = 0

function init(args)
  local mode = args[1] or "get"
  hold_mode = mode == "hold"
  staff_token = args[4]
  if mode == "purchase" or mode == "hold" then
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
  elseif mode == "join" or mode == "queue" then
    local tokens_file, sale_id = args[2], args[3]
    local method = mode == "join" and "POST" or "GET"
    for token in io.lines(tokens_file) do
      requests[#requests + 1] = wrk.format(method, "/api/v1/flashsales/" .. sale_id .. "/queue", {
        ["Authorization"] = "Token " .. token,
      })
    end
    -- Each thread takes its own share of the tokens, so no buyer is sent by two threads at once.
    local share = math.floor(#requests / tonumber(args[4] or "1"))
    next_request = (thread_index - 1) * share + 1
  else
    requests[1] = wrk.format("GET", wrk.path)
  end
end

function request()
  sent = sent + 1
  if #confirms > 0 then
    return table.remove(confirms, 1)
  end
  local r = requests[next_request]
  next_request = next_request + 1
  if next_request > #requests then next_request = 1 end
  return r
end

function response(status, headers, body)
  if hold_mode and body then
    local purchase_id = string.match(body, '"purchaseId"%s*:%s*(%d+)')
    local kind = string.match(body, '"status"%s*:%s*"(%a+)"')
    if status == 201 and purchase_id then
      confirms[#confirms + 1] = wrk.format("POST", "/api/v1/purchases/" .. purchase_id .. "/confirm", {
        ["Authorization"] = "Token " .. staff_token,
        ["Content-Type"] = "application/json",
      }, "")
      counts["purchase:" .. (kind or "?")] = (counts["purchase:" .. (kind or "?")] or 0) + 1
    elseif status == 200 and kind == "confirmed" then
      counts["confirmed"] = (counts["confirmed"] or 0) + 1
    end
  end
  local key = tostring(status)
  if status == 409 and body then
    local code = string.match(body, '"code"%s*:%s*"([%w_]+)"')
    if code then key = key .. ":" .. code end
  end
  counts[key] = (counts[key] or 0) + 1
end

function done(summary, latency, requests_stats)
  local merged = {}
  local sent_total = 0
  for _, thread in ipairs(threads) do
    local c = thread:get("counts") or {}
    for k, v in pairs(c) do merged[k] = (merged[k] or 0) + v end
    sent_total = sent_total + (thread:get("sent") or 0)
  end
  local parts = {}
  for k, v in pairs(merged) do parts[#parts + 1] = string.format('"%s": %d', k, v) end
  io.write(string.format(
    'WRKJSON {"duration_us": %d, "requests": %d, "connect_errors": %d, "read_errors": %d, '
      .. '"write_errors": %d, "timeouts": %d, "status_errors": %d, '
      .. '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "sent": %d, "counts": {%s}}\n',
    summary.duration, summary.requests, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.timeout, summary.errors.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    sent_total, table.concat(parts, ", ")))
end
