"""Drives the dashboard in headless Chromium on PostgreSQL (called by test_pg_ui_browser.sh).

The dashboard is opened on the node that does not send; what it shows is compared with what
PostgreSQL holds (psql). Environment: OBX_UI_URL (that node's API base), OBX_UI_TOKEN,
OBX_UI_MOCK (mock Partoo base), OBX_UI_SHOTS (screenshot directory), OBX_UI_TMP (scratch
directory for the profile), OBX_PG_PSQL (the psql binary), OBX_PG_URI (the cluster),
OBX_PG_SENDER and OBX_PG_OTHER (the names of the sending node and of the dashboard's node).
Exits non-zero on the first failed step, on any console error and on any request that
leaves the dashboard's origin.
"""
import os
import subprocess
import sys
import time
import traceback

from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from ui_driver import collect_problems, mock_stats as ui_mock_stats, start_chromium, step
from ui_driver import text as ui_text

BASE = os.environ["OBX_UI_URL"]
TOKEN = os.environ["OBX_UI_TOKEN"]
MOCK = os.environ["OBX_UI_MOCK"]
SHOTS = os.environ["OBX_UI_SHOTS"]
PSQL = os.environ["OBX_PG_PSQL"]
PG_URI = os.environ["OBX_PG_URI"]
SENDER = os.environ["OBX_PG_SENDER"]
OTHER = os.environ["OBX_PG_OTHER"]
WAIT_S = 20  # how long a step may wait for the page (a bound, not an assertion)
STATES = ["queued", "sending", "accepted", "confirmed", "failed", "cancelled"]


def q(sql):
    """One query in the schema outbox, unaligned, tuples only: its rows as lists of fields."""
    out = subprocess.run([PSQL, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", PG_URI, "-A", "-t",
                          "-F", "\t", "-c", "SET search_path = outbox; " + sql],
                         check=True, capture_output=True, text=True, timeout=30).stdout
    return [line.split("\t") for line in out.splitlines() if line]


def q1(sql):
    rows = q(sql)
    return rows[0][0] if rows else None


def mock_stats():
    return ui_mock_stats(MOCK)



def main():
    d = start_chromium(os.environ.get("OBX_UI_TMP"))
    # A view re-renders as a whole (after an action, on Refresh): an element found a moment
    # before may be replaced while it is read; waits look again.
    w = WebDriverWait(d, WAIT_S, ignored_exceptions=(StaleElementReferenceException,))
    problems = []
    origin = BASE.rstrip("/")

    def shot(name):
        d.save_screenshot(os.path.join(SHOTS, "pg-" + name + ".png"))

    def check_logs():
        collect_problems(d, origin, problems)

    def text(css):
        return ui_text(d, css)

    try:
        step("token prompt, on node %s (node %s sends)" % (OTHER, SENDER))
        d.get(BASE + "/ui/")
        w.until(EC.visibility_of_element_located((By.ID, "token-input")))
        d.find_element(By.ID, "token-input").send_keys(TOKEN)
        d.find_element(By.ID, "token-ok").click()

        step("overview: the totals are PostgreSQL's counts")
        w.until(EC.presence_of_element_located((By.CSS_SELECTOR,
                                                '#totals [data-total="accepted"]')))
        counts = {s: 0 for s in STATES}
        for state, n in q("SELECT state, count(*) FROM outbox GROUP BY state"):
            counts[state] = int(n)
        assert counts["accepted"] == 22, counts
        shown = {s: text('#totals [data-total="%s"]' % s) for s in STATES}
        assert shown == {s: str(n) for s, n in counts.items()}, (shown, counts)
        for ch, n in (("sql", 20), ("api", 2)):
            assert text('[data-count="%s:accepted"]' % ch) == str(n), "channel %s" % ch
        assert text("#holds") == "none", text("#holds")
        shot("overview")

        step("one message: its transitions and its attempt, as in PostgreSQL")
        d.get(BASE + "/ui/messages/api/api-1")
        w.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#attempts tbody tr")))
        mid = q1("SELECT id FROM outbox WHERE channel_id = 'api' AND external_message_id = 'api-1'")
        trans = q("SELECT from_state, to_state, reason FROM transitions WHERE message_id = %s "
                  "ORDER BY id" % mid)
        atts = q("SELECT coalesce(http_status::text, '—'), outcome FROM attempts "
                 "WHERE message_id = %s ORDER BY id" % mid)
        assert len(atts) == 1 and atts[0][1] == "accepted", atts
        assert text('[data-field="state"]') == "accepted"
        assert text('[data-field="attempts"]') == "1"
        items = [li.text for li in d.find_elements(By.CSS_SELECTOR, "#timeline li")]
        assert len(trans) >= 2 and len(items) == len(trans), (items, trans)
        for li, (frm, to, reason) in zip(items, trans):
            assert frm in li and to in li and reason in li, (li, frm, to, reason)
        rows = d.find_elements(By.CSS_SELECTOR, "#attempts tbody tr")
        assert len(rows) == 1, [r.text for r in rows]
        cells = [c.text for c in rows[0].find_elements(By.TAG_NAME, "td")]
        assert cells[2] == atts[0][0] and cells[3] == atts[0][1], (cells, atts)
        d.execute_script("arguments[0].scrollIntoView()",
                         d.find_element(By.CSS_SELECTOR, "#timeline"))
        shot("message")
        d.find_element(By.CSS_SELECTOR, '[data-field="conversation"] a').click()
        w.until(EC.url_contains("/ui/conversations/api/c-api1"))
        w.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#conversation tbody tr")))

        step("tenants and nodes: both nodes live, the sender holds default")
        d.get(BASE + "/ui/tenants")
        w.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#nodes tbody tr")))
        w.until(EC.presence_of_element_located((By.CSS_SELECTOR,
                                                '#tenants tr[data-tenant="default"]')))
        nodes = d.find_elements(By.CSS_SELECTOR, "#nodes tbody tr")
        assert sorted(r.get_attribute("data-node") for r in nodes) == sorted([SENDER, OTHER]), \
            [r.text for r in nodes]
        for r in nodes:
            assert r.find_elements(By.TAG_NAME, "td")[0].text == "live", r.text
        epoch = q1("SELECT epoch FROM tenant_leases WHERE tenant = 'default' AND node = '%s'"
                   % SENDER)
        assert epoch, "the sender's lease in PostgreSQL"
        held = '#nodes tr[data-node="%s"] td' % SENDER
        assert d.find_elements(By.CSS_SELECTOR, held)[2].text == "default (epoch %s)" % epoch, \
            text('#nodes tr[data-node="%s"]' % SENDER)
        assert d.find_elements(By.CSS_SELECTOR, '#nodes tr[data-node="%s"] td' % OTHER)[2].text \
            == "none", text('#nodes tr[data-node="%s"]' % OTHER)
        assert text('[data-tcount="default:accepted"]') == "22"
        assert text('[data-hold="default"]') == "no"
        shot("tenants")

        step("pause the default tenant from its row: held in PostgreSQL")
        d.find_element(By.CSS_SELECTOR, '[data-pause-tenant="default"]').click()
        w.until(EC.visibility_of_element_located((By.ID, "confirm-yes")))
        assert "Pause tenant default?" in text("#confirm-text"), text("#confirm-text")
        d.find_element(By.ID, "confirm-yes").click()
        w.until(EC.presence_of_element_located((By.CSS_SELECTOR, '[data-resume-tenant="default"]')))
        assert q1("SELECT count(*) FROM pauses WHERE scope = 'tenant' AND key = 'default' "
                  "AND by = 'dashboard' AND resumed_at_ms IS NULL") == "1", \
            q("SELECT * FROM pauses")
        assert "by dashboard" in text('[data-hold="default"]'), text('[data-hold="default"]')
        received = mock_stats()["received"]
        q("INSERT INTO outbox (channel_id, external_message_id, business_id, "
          "external_conversation_id, content, sender_type) "
          "VALUES ('sql', 'held-1', 'b1', 'c-held', 'x', 'User')")
        until = time.time() + 2.0  # several worker turns: a held message must stay queued
        while time.time() < until:
            st = q("SELECT state, attempts FROM outbox WHERE external_message_id = 'held-1'")
            assert st == [["queued", "0"]], "held-1 while the tenant is held: %r" % st
            time.sleep(0.2)
        assert mock_stats()["received"] == received, "nothing sent while the tenant is held"
        d.find_element(By.ID, "refresh").click()
        w.until(lambda _: text('[data-tcount="default:queued"]') == "1",
                "the held message counted queued after Refresh")
        shot("tenants-paused")

        step("resume it: the held message is sent")
        w.until(EC.element_to_be_clickable((By.CSS_SELECTOR,
                                            '[data-resume-tenant="default"]'))).click()
        w.until(EC.presence_of_element_located((By.CSS_SELECTOR, '[data-pause-tenant="default"]')))
        assert text('[data-hold="default"]') == "no"
        w.until(
            lambda _: q1("SELECT state FROM outbox WHERE external_message_id = 'held-1'")
            == "accepted", "held-1 accepted after the resume")

        step("audit: the chain verifies")
        d.get(BASE + "/ui/audit")
        w.until(EC.element_to_be_clickable((By.ID, "verify-btn"))).click()
        w.until(EC.text_to_be_present_in_element((By.ID, "verify-result"), "The chain verifies"))
        shot("audit")
        check_logs()
    except Exception as e:  # noqa: BLE001 - report any failure with a screenshot
        # Where in this script, and what (a WebDriver error's message without the driver's
        # native stack trace).
        here = [f for f in traceback.extract_tb(e.__traceback__) if f.filename == __file__]
        what = (getattr(e, "msg", None) or str(e) or "").strip().splitlines()
        problems.append("step failed at line %s (%s): %s: %s" % (
            here[-1].lineno if here else "?", here[-1].line if here else "?",
            type(e).__name__, what[0] if what else ""))
        try:
            shot("failure")
            check_logs()
        except Exception:  # noqa: BLE001
            pass
    finally:
        d.quit()
    for p in problems:
        print("FAIL", p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
