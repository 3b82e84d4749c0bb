-- bench/api_wrk.lua: wrk script for the producer API benchmark (bench/api_bench.sh).
--
-- POST /v1/messages with a unique external_message_id on every message: "<run>-<thread>-<n>"
-- (single messages) or "<run>-<thread>-<n>-<i>" (batches). Environment:
--   WRK_RUN    prefix of the ids, so that runs against one database never collide
--   BATCH      messages per request: 1 sends one message object, more send {"messages":[...]}
--   API_TOKEN  sends "Authorization: Bearer <token>" when set
-- done() prints one machine-readable RESULT line (latencies in microseconds).

local run = os.getenv("WRK_RUN") or "wrk"
local batch = tonumber(os.getenv("BATCH") or "1")
local token = os.getenv("API_TOKEN")
local threads = 0

function setup(thread)
    thread:set("tid", threads)
    threads = threads + 1
end

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
if token and token ~= "" then
    wrk.headers["Authorization"] = "Bearer " .. token
end

local n = 0

local function message(id, k)
    local c = k % 1000
    return string.format(
        '{"channel_id":"bench","external_message_id":"%s","business_id":"biz-%d",' ..
        '"external_conversation_id":"conv-%d","content":"Bench message %d: hello, this is ' ..
        'a typical short chat message body.","sender_type":"Consumer","consumer_name":"Bench"}',
        id, c % 10, c, k)
end

request = function()
    n = n + 1
    local prefix = string.format("%s-%d-%d", run, tid or 0, n)
    local body
    if batch <= 1 then
        body = message(prefix, n)
    else
        local items = {}
        for i = 1, batch do
            items[i] = message(prefix .. "-" .. i, n * batch + i)
        end
        body = '{"messages":[' .. table.concat(items, ",") .. ']}'
    end
    return wrk.format(nil, nil, nil, body)
end

done = function(summary, latency, requests)
    io.write(string.format(
        "RESULT requests=%d duration_us=%d non2xx=%d connect=%d read=%d write=%d timeout=%d " ..
        "p50_us=%d p90_us=%d p99_us=%d max_us=%d\n",
        summary.requests, summary.duration, summary.errors.status, summary.errors.connect,
        summary.errors.read, summary.errors.write, summary.errors.timeout,
        latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
