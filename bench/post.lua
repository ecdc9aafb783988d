-- wrk's script for `make bench`: POST a JSON body (a non-streamed chat completion, or BENCH_BODY
-- from the environment) and one JSON line out.
--
--   wrk -t1 -c32 -d10s -s bench/post.lua http://127.0.0.1:PORT/v1/chat/completions -- KEY [KEYS_FILE]
--
-- KEY goes in `Authorization: Bearer` ("-": none, straight to the stand-in). With KEYS_FILE, a
-- key a line, each request takes the next one instead (the bad-key flood). BENCH_HEADERS, from the
-- environment, adds headers, one `Name: value` a line (a peer's routing headers). The last line is
-- `BENCH_JSON {...}`: answers by HTTP status, socket errors, and latency percentiles in µs.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  statuses = {}
  wrk.method = "POST"
  wrk.body = os.getenv("BENCH_BODY") or '{"model":"bench-model","messages":[{"role":"user","content":"Say hi."}]}'
  wrk.headers["Content-Type"] = "application/json"
  for line in (os.getenv("BENCH_HEADERS") or ""):gmatch("[^\n]+") do
    local name, value = line:match("^%s*([^:]-)%s*:%s*(.-)%s*$")
    wrk.headers[name] = value
  end
  if args[1] ~= nil and args[1] ~= "-" then
    wrk.headers["Authorization"] = "Bearer " .. args[1]
  end
  if args[2] ~= nil then
    local keys, next_key = {}, 1
    for line in io.lines(args[2]) do
      table.insert(keys, line)
    end
    -- Only here, so that the other runs keep wrk's cheaper pre-formatted request.
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
  local counts, parts = {}, {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do
      counts[status] = (counts[status] or 0) + n
    end
  end
  for status, n in pairs(counts) do
    table.insert(parts, string.format('"%d":%d', status, n))
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"us":%d,"statuses":{%s},"socket_errors":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, table.concat(parts, ","), e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
