-- wrk script: POST /v1/chat/completions (non-streaming, tiny answer) and report as one JSON line.
--
--   wrk -t1 -c32 -d10s --latency -s bench/post.lua http://127.0.0.1:PORT/v1/chat/completions -- KEY
--
-- KEY goes in `Authorization: Bearer`; "-" sends none (for the stand-in upstream).
-- With a second argument, a file of keys, one a line, each request takes the next key instead
-- (the bad-key flood).
-- The last line printed is `BENCH_JSON {...}`: answers counted by HTTP status, socket errors,
-- request count, duration and latency percentiles (microseconds), read by bench/loadgen.py.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  statuses = {}
  wrk.method = "POST"
  wrk.body = '{"model":"bench-model","messages":[{"role":"user","content":"Say hi."}]}'
  wrk.headers["Content-Type"] = "application/json"
  local key = args[1]
  if key ~= nil and key ~= "" and key ~= "-" then
    wrk.headers["Authorization"] = "Bearer " .. key
  end
  if args[2] ~= nil then
    local keys, next_key = {}, 1
    for line in io.lines(args[2]) do
      table.insert(keys, line)
    end
    -- Defined here, so that the other runs keep wrk's cheaper pre-formatted request.
    request = function()
      wrk.headers["Authorization"] = "Bearer " .. keys[next_key]
      next_key = next_key % #keys + 1
      return wrk.format()
    end
  end
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local counts = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do
      counts[status] = (counts[status] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(counts) do
    table.insert(parts, string.format('"%d":%d', status, n))
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"statuses":{%s},' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d,"status":%d},' ..
    '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f}}\n',
    summary.requests, summary.duration, table.concat(parts, ","),
    e.connect, e.read, e.write, e.timeout, e.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
