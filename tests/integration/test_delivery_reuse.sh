#!/usr/bin/env bash
# The attempt log holds every request Partoo received (issue 12). When a kept-alive connection
# dies after Partoo has read a request and before it answers, libcurl must not re-send the POST
# on a fresh connection behind our back: the failure is a counted transport attempt, retried
# through our own backoff, so attempts in the database == requests the mock saw.
. "$(dirname "$0")/lib.sh"

start_mock --rate-limit 0
start_serve --rate-limit 0 --retry-base 100ms --retry-cap 200ms --max-inflight 1
# The first message opens the connection and leaves it in libcurl's cache.
enqueue_n 1 warm
wait_until 10 '[ "$(count_state accepted)" = 1 ]'
# The next request, on that reused connection, is read and then dropped unanswered.
mock_post faults '{"script":[0]}' >/dev/null
enqueue_n 1 drop
wait_until 15 '[ "$(count_state accepted)" = 2 ]'
assert_eq "the dropped message is delivered" \
    "$(sql "$DB" "SELECT state FROM outbox WHERE external_message_id = 'drop1'")" accepted
assert_eq "the mock dropped one request" "$(mock_stat '$.dropped')" 1
assert_eq "attempts in the database == requests the mock saw" \
    "$(sql "$DB" "SELECT count(*) FROM attempts")" "$(mock_stat '$.requests')"
assert_eq "the drop is a transport attempt, then accepted" \
    "$(sql "$DB" "SELECT group_concat(a.outcome, ',') FROM attempts a JOIN outbox o
                  ON o.id = a.message_id WHERE o.external_message_id = 'drop1'")" "transport,accepted"
assert_contains "the error says what happened" \
    "$(sql "$DB" "SELECT error FROM attempts WHERE outcome = 'transport'")" "without an answer"
assert_eq "outbox.attempts agrees" \
    "$(sql "$DB" "SELECT attempts FROM outbox WHERE external_message_id = 'drop1'")" 2
finish
