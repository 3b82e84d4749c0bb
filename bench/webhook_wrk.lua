-- bench/webhook_wrk.lua: wrk script for bench/webhook_bench.sh.
--
-- Fires pre-signed webhook events (bench/webhook_events.c output: "signature<TAB>body" per
-- line, file named by WEBHOOK_EVENTS) at the webhook listener, each event exactly once over
-- all threads: thread k of WEBHOOK_THREADS sends lines k, k + T, k + 2T, ... A thread stops
-- once all of its events were answered; while it waits for the last answers, its idle
-- connections repeat its last event (a byte-identical duplicate, which the receiver answers
-- 200 without storing it again), and it creates the file <WEBHOOK_DONE_DIR>/<thread number>
-- so that the caller can stop wrk (SIGINT) instead of waiting for -d. Prints the non-200
-- count and latency percentiles at the end.
--
-- wrk 4.1 calls request() once in thread 0 before the run, to check the request it builds
-- (script_verify_request); that call must not use up an event, or the event would never be
-- sent. Thread 0's first call therefore returns its first event without consuming it (should
-- a wrk version not make that call, the first event is merely sent twice: a repeat).

local thread_count = 0
local threads = {}

function setup(thread)
    thread:set("tid", thread_count)
    thread_count = thread_count + 1
    table.insert(threads, thread)
end

function init(args)
    local path = os.getenv("WEBHOOK_EVENTS")
    local nthreads = tonumber(os.getenv("WEBHOOK_THREADS") or "1")
    local i = 0
    reqs = {}
    for line in io.lines(path) do
        if i % nthreads == tid then
            local tab = line:find("\t", 1, true)
            reqs[#reqs + 1] = wrk.format("POST", nil, {
                ["Content-Type"] = "application/json",
                ["X-Partoo-Signature-v1"] = line:sub(1, tab - 1),
            }, line:sub(tab + 1))
        end
        i = i + 1
    end
    total = #reqs
    next_req = 0
    verify_call = (tid == 0)
    answered = 0
    non200 = 0
    extra = 0
end

function request()
    if verify_call then
        verify_call = false
        return reqs[1]
    end
    next_req = next_req + 1
    if next_req > total then
        extra = extra + 1
        return reqs[total]
    end
    return reqs[next_req]
end

function response(status, headers, body)
    answered = answered + 1
    if status ~= 200 then
        non200 = non200 + 1
    end
    if answered == total then
        local dir = os.getenv("WEBHOOK_DONE_DIR")
        if dir then
            local f = io.open(dir .. "/" .. tostring(tid), "w")
            if f then f:close() end
        end
        wrk.thread:stop()
    end
end

function done(summary, latency, requests)
    local bad, repeats = 0, 0
    for _, t in ipairs(threads) do
        bad = bad + t:get("non200")
        repeats = repeats + t:get("extra")
    end
    io.write(string.format("WEBHOOK_NON200 %d\n", bad))
    io.write(string.format("WEBHOOK_REPEATS %d\n", repeats))
    io.write(string.format("WEBHOOK_REQUESTS %d\n", summary.requests))
    io.write(string.format("WEBHOOK_ERRORS %d\n", summary.errors.connect + summary.errors.read +
        summary.errors.write + summary.errors.status + summary.errors.timeout))
    io.write(string.format("WEBHOOK_DURATION_US %d\n", summary.duration))
    for _, p in ipairs({ 50, 90, 99, 99.9 }) do
        io.write(string.format("WEBHOOK_LAT_P%s_US %d\n", tostring(p), latency:percentile(p)))
    end
    io.write(string.format("WEBHOOK_LAT_MAX_US %d\n", latency.max))
end
