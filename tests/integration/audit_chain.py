"""The audit chain of lib/audit.h, written again in Python for the tests (not a test itself).

The integration tests check the C code against this independent reading of the documented
format, so it lives here once: test_obs_audit.sh, test_obs_purge.sh and test_audit_keyed.sh
import it (PYTHONPATH=tests/integration, PYTHONDONTWRITEBYTECODE=1: no __pycache__ in the
source tree).
"""


def J(t):
    """A JSON string escaped as lib/audit.h documents (obx_buf_json_str)."""
    out = '"'
    for c in t:
        out += {'"': '\\"', '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t'}.get(
            c, c if ord(c) >= 0x20 else '\\u%04x' % ord(c))
    return out + '"'


def canonical(id_, at_ms, kind, ch, ext, record):
    """One event's canonical form, the text each chain hash covers."""
    return "[%d,%d,%s,%s,%s,%s]" % (id_, at_ms, J(kind), J(ch or ""), J(ext or ""), J(record))


# The events of a seal's range as lib/audit.c reads them (lib/audit.h, "Chain"): parameters
# (transitions after, up to, attempts after, up to); rows (id, at_ms, kind, channel,
# external id, record JSON, 0 for a transition / 1 for an attempt).
EVENTS = ("SELECT t.id, t.at_ms, 'transition', coalesce(m.channel_id, ''),"
    " coalesce(m.external_message_id, ''), json_object('message_id', t.message_id, 'from',"
    " t.from_state, 'to', t.to_state, 'reason', t.reason), 0 FROM transitions t"
    " LEFT JOIN audit_messages m ON m.message_id = t.message_id WHERE t.id > ? AND t.id <= ?"
    " UNION ALL SELECT a.id, a.started_at_ms, 'attempt', coalesce(m.channel_id, ''),"
    " coalesce(m.external_message_id, ''), json_object('message_id', a.message_id,"
    " 'sent_sha256', lower(hex(m.sent_sha256)), 'duration_ms', a.duration_ms, 'http_status',"
    " a.http_status, 'outcome', a.outcome, 'error', a.error, 'response_excerpt',"
    " a.response_excerpt), 1 FROM attempts a LEFT JOIN audit_messages m"
    " ON m.message_id = a.message_id WHERE a.id > ? AND a.id <= ? ORDER BY 7, 1")
