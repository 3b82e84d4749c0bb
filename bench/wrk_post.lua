-- bench/wrk_post.lua: wrk script for the mock-capacity benchmark (bench/drain.sh).
--
-- Sends what `outbox serve` sends: POST /v2/custom-channels/bench-ch/messages with the
-- x-APIKey, Content-Type, User-Agent and Accept headers of libcurl, and a body shaped like
-- bench/lib.sh's gen_jsonl messages (business, conversation, a unique external_message_id,
-- ~70-byte content, sender_type). WRK_RUN (environment) prefixes the ids so that runs
-- against the same mock do not collide. done() prints one machine-readable RESULT line.

local run = os.getenv("WRK_RUN") or "wrk"
local threads = 0
local n = 0

function setup(thread)
    thread:set("tid", threads)
    threads = threads + 1
end

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["x-APIKey"] = "bench-key"
wrk.headers["User-Agent"] = "partoo-outbox/bench"
wrk.headers["Accept"] = "*/*"

request = function()
    n = n + 1
    local c = n % 10000
    local body = string.format(
        '{"business_id":"biz-%d","external_conversation_id":"conv-%d",' ..
        '"external_message_id":"%s-%d-%d","content":"Bench message %d: hello, this is a ' ..
        'typical short chat message body.","sender_type":"Consumer"}',
        c % 10, c, run, tid or 0, n, n)
    return wrk.format(nil, "/v2/custom-channels/bench-ch/messages", nil, body)
end

done = function(summary, latency, requests)
    io.write(string.format(
        "RESULT requests=%d duration_us=%d non2xx=%d connect=%d read=%d write=%d timeout=%d " ..
        "p50_us=%d p99_us=%d\n",
        summary.requests, summary.duration, summary.errors.status, summary.errors.connect,
        summary.errors.read, summary.errors.write, summary.errors.timeout,
        latency:percentile(50), latency:percentile(99)))
end
