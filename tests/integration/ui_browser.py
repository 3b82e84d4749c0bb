"""Drives the dashboard in headless Chromium (called by test_ui_browser.sh).

Environment: OBX_UI_URL (the API base), OBX_UI_TOKEN, OBX_UI_MOCK (mock Partoo base),
OBX_UI_SHOTS (screenshot directory), OBX_UI_TMP (scratch directory for the profile).
Exits non-zero on the first failed step, on any console error and on any request that
leaves the dashboard's origin.
"""
import json
import os
import sys
import time
import urllib.request

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
WAIT_S = 15  # how long a step may wait for the page (a bound, not an assertion)


def api(method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    r = urllib.request.Request(BASE + path, data=data, method=method,
                               headers={"Authorization": "Bearer " + TOKEN,
                                        "Content-Type": "application/json"})
    with urllib.request.urlopen(r, timeout=10) as resp:
        return json.loads(resp.read() or b"null")


def mock_stats():
    return ui_mock_stats(MOCK)


def msg(channel, ext, conv):
    return {"channel_id": channel, "external_message_id": ext, "business_id": "b1",
            "external_conversation_id": conv, "content": "hello " + ext,
            "sender_type": "Consumer"}



def main():
    d = start_chromium(os.environ.get("OBX_UI_TMP"))
    w = WebDriverWait(d, WAIT_S)
    problems = []
    origin = BASE.rstrip("/")

    def shot(name):
        d.save_screenshot(os.path.join(SHOTS, name + ".png"))

    def check_logs():
        collect_problems(d, origin, problems)

    def text(css):
        return ui_text(d, css)

    try:
        step("token prompt")
        d.get(BASE + "/ui/")
        w.until(EC.visibility_of_element_located((By.ID, "token-input")))
        shot("token-prompt")
        d.find_element(By.ID, "token-input").send_keys("wrong-token")
        d.find_element(By.ID, "token-ok").click()
        w.until(EC.text_to_be_present_in_element((By.ID, "token-problem"), "refused"))
        d.find_element(By.ID, "token-input").send_keys(TOKEN)
        d.find_element(By.ID, "token-ok").click()

        step("overview counts")
        w.until(EC.presence_of_element_located((By.CSS_SELECTOR, '[data-total="failed"]')))
        stats = api("GET", "/v1/stats")  # the full count, to compare with the kept counts
        assert text('[data-total="failed"]') == str(stats["counts"]["failed"]) == "1", \
            "failed count on the overview"
        assert text('[data-total="accepted"]') == str(stats["counts"]["accepted"])
        assert text("#holds") == "none"
        assert d.find_element(By.CSS_SELECTOR, "#tenants-link a").get_attribute("href") == \
            BASE + "/ui/tenants"
        w.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#chart-hour .uplot")))
        shot("overview")

        step("find a message by its id")
        d.find_element(By.CSS_SELECTOR, 'nav a[data-nav="messages"]').click()
        w.until(EC.presence_of_element_located((By.ID, "f-q")))
        d.find_element(By.ID, "f-q").send_keys("bad-1")
        d.find_element(By.ID, "apply").click()
        w.until(EC.url_contains("/ui/messages/ch-a/bad-1"))
        w.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#attempts tbody tr")))
        rows = d.find_elements(By.CSS_SELECTOR, "#attempts tbody tr")
        assert len(rows) == 1 and "400" in rows[0].text, "the 400 attempt is shown"
        assert text('[data-field="state"]') == "failed"
        shot("message-failed")

        step("retry and watch it become accepted")
        d.find_element(By.ID, "retry").click()
        w.until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, '[data-field="state"]'),
                                                 "accepted"))
        assert len(d.find_elements(By.CSS_SELECTOR, "#attempts tbody tr")) == 2
        assert "retried from the dashboard" in text("#timeline")
        shot("message-accepted")

        step("reload a deep link")
        d.refresh()
        w.until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, '[data-field="state"]'),
                                                 "accepted"))
        d.get(BASE + "/ui/conversations/ch-a/c-bad")
        w.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#conversation tbody tr")))
        shot("conversation")

        step("pause a channel from the overview, nothing is sent")
        api("POST", "/v1/messages", msg("ch-b", "b-0", "c-b"))
        d.get(BASE + "/ui/")
        pause = w.until(EC.element_to_be_clickable((By.CSS_SELECTOR, '[data-pause="ch-b"]')))
        pause.click()
        w.until(EC.visibility_of_element_located((By.ID, "confirm-yes"))).click()
        w.until(EC.presence_of_element_located((By.CSS_SELECTOR, '[data-resume="ch-b"]')))
        received = mock_stats()["received"]
        for i in (1, 2, 3):
            api("POST", "/v1/messages", msg("ch-b", "b-%d" % i, "c-b%d" % i))
        d.get(BASE + "/ui/")  # the overview shows the hold
        w.until(EC.text_to_be_present_in_element((By.ID, "holds"), "ch-b"))
        w.until(EC.text_to_be_present_in_element(
            (By.CSS_SELECTOR, '[data-count="ch-b:queued"]'), "3"))
        time.sleep(1.0)  # several worker turns: a held message must stay queued
        assert mock_stats()["received"] == received, "nothing sent while paused"
        for i in (1, 2, 3):
            m = api("GET", "/v1/messages/ch-b/b-%d" % i)
            assert m["state"] == "queued" and m["attempts"] == 0, m
        shot("overview-paused")

        step("resume and see it drain")
        d.find_element(By.CSS_SELECTOR, '[data-resume="ch-b"]').click()
        w.until(EC.presence_of_element_located((By.CSS_SELECTOR, '[data-pause="ch-b"]')))
        WebDriverWait(d, WAIT_S).until(
            lambda _: all(api("GET", "/v1/messages/ch-b/b-%d" % i)["state"] == "accepted"
                          for i in (1, 2, 3)))
        d.refresh()
        w.until(EC.text_to_be_present_in_element(
            (By.CSS_SELECTOR, '[data-count="ch-b:accepted"]'), "4"))

        step("bulk-cancel a filter after the count")
        api("POST", "/v1/pause", {"channel_id": "ch-c", "reason": "held for the test"})
        for i in (1, 2, 3):
            api("POST", "/v1/messages", msg("ch-c", "c-%d" % i, "c-c%d" % i))
        d.get(BASE + "/ui/messages?state=queued&channel_id=ch-c")
        w.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#messages tbody tr")))
        assert len(d.find_elements(By.CSS_SELECTOR, "#messages tbody tr")) == 3
        shot("messages")
        d.find_element(By.ID, "bulk-cancel").click()
        w.until(EC.visibility_of_element_located((By.ID, "confirm-text")))
        assert "Cancel 3 message(s)" in text("#confirm-text"), text("#confirm-text")
        shot("bulk-confirm")
        d.find_element(By.ID, "confirm-yes").click()
        w.until(EC.presence_of_element_located((By.ID, "empty")))
        assert "Cancelled 3" in text("#status")

        step("filter by a time range, then reload its deep link")
        d.get(BASE + "/ui/messages?channel_id=ch-t")
        w.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#messages tbody tr")))
        assert len(d.find_elements(By.CSS_SELECTOR, "#messages tbody tr")) == 5
        for name, iso in (("created_after", "2026-01-01T00:00:01Z"),
                          ("created_before", "2026-01-01T00:00:04Z")):
            el = d.find_element(By.ID, "f-" + name)
            assert el.get_attribute("type") == "datetime-local"
            assert d.find_element(By.CSS_SELECTOR, 'label[for="f-%s"]' % name).text
            # the input's local time for that instant, whatever the browser's time zone
            d.execute_script("const t = new Date(arguments[1]);"
                             "arguments[0].value = new Date(t - t.getTimezoneOffset() * 60000)"
                             ".toISOString().slice(0, 19);", el, iso)
        d.find_element(By.ID, "apply").click()
        w.until(EC.url_contains("created_before=2026-01-01T00%3A00%3A04.000Z"))
        assert "created_after=2026-01-01T00%3A00%3A01.000Z" in d.current_url, d.current_url

        def shows_window(_):  # the view renders after the URL changes: wait for the list
            try:
                return [r.text for r in d.find_elements(By.CSS_SELECTOR,
                                                        "#messages .msg-link")] == \
                    ["t-3", "t-2", "t-1"]
            except StaleElementReferenceException:
                return False
        w.until(shows_window, "the window's three messages, newest first")
        shot("messages-time-range")
        d.refresh()
        w.until(shows_window, "the same three after reloading the deep link")
        assert d.find_element(By.ID, "f-created_after").get_attribute("value")

        step("tenants: the registry and the default, with their counts")
        d.get(BASE + "/ui/tenants")
        w.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#tenants tbody tr")))
        ov = api("GET", "/v1/stats/overview")
        rows = d.find_elements(By.CSS_SELECTOR, "#tenants tbody tr")
        names = sorted(r.get_attribute("data-tenant") for r in rows)
        assert names == ["acme", "default", "globex"], names
        acme = '#tenants tr[data-tenant="acme"]'
        assert api("GET", "/v1/tenants/acme")["key_fingerprint"] in text(acme), text(acme)
        assert "6000/min" in text(acme), text(acme)
        hrefs = sorted(a.get_attribute("href")
                       for a in d.find_elements(By.CSS_SELECTOR, acme + " td.channels a"))
        assert hrefs == [BASE + "/ui/messages?channel_id=acme-reviews",
                         BASE + "/ui/messages?channel_id=acme-sms"], hrefs
        assert "acme-reviews (read-only)" in text(acme + " td.channels")
        default = [t for t in ov["tenants"] if t["tenant"] == "default"][0]
        for st in ("queued", "sending", "accepted", "failed"):
            assert text('[data-tcount="default:%s"]' % st) == str(default["counts"][st]), st
        assert text('[data-tcount="default:accepted"]') != "0"
        assert text('[data-hold="acme"]') == "no"
        shot("tenants")

        step("tenants: nodes, one on SQLite")
        assert "single node" in text("#single-node"), "the nodes section on SQLite"
        assert not d.find_elements(By.ID, "nodes")

        step("pause a tenant, its messages are held")
        received = mock_stats()["received"]
        d.find_element(By.CSS_SELECTOR, '[data-pause-tenant="acme"]').click()
        w.until(EC.visibility_of_element_located((By.ID, "confirm-yes")))
        assert "Pause tenant acme?" in text("#confirm-text"), text("#confirm-text")
        d.find_element(By.ID, "confirm-yes").click()
        w.until(EC.presence_of_element_located((By.CSS_SELECTOR,
                                                '[data-resume-tenant="acme"]')))
        holds = api("GET", "/v1/stats")["holds"]
        mine = [p for p in holds if p.get("scope") == "tenant" and p.get("tenant") == "acme"]
        assert len(mine) == 1 and mine[0]["by"] == "dashboard" and \
            mine[0]["reason"] == "paused from the dashboard", holds
        assert "by dashboard" in text('[data-hold="acme"]'), text('[data-hold="acme"]')
        assert d.find_elements(By.CSS_SELECTOR, '[data-pause-tenant="globex"]'), \
            "only acme is held"
        api("POST", "/v1/messages", msg("acme-sms", "a-1", "c-a1"))
        time.sleep(1.0)  # several worker turns: a held message must stay queued
        assert mock_stats()["received"] == received, "nothing sent while the tenant is held"
        m = api("GET", "/v1/messages/acme-sms/a-1")
        assert m["state"] == "queued" and m["attempts"] == 0, m
        d.find_element(By.ID, "refresh").click()
        w.until(EC.text_to_be_present_in_element(
            (By.CSS_SELECTOR, '[data-tcount="acme:queued"]'), "1"))
        shot("tenants-paused")

        step("the overview shows the tenant's hold")
        d.get(BASE + "/ui/")
        w.until(EC.text_to_be_present_in_element((By.ID, "holds"), "tenant acme"))
        w.until(EC.text_to_be_present_in_element(
            (By.CSS_SELECTOR, '[data-tenant-hold="acme-sms"]'), "held with tenant acme"))
        assert not d.find_elements(By.CSS_SELECTOR, '[data-tenant-hold="ch-a"]')
        assert text('[data-tenant-count="acme:queued"]') == "1", "counts per tenant"
        shot("overview-tenant-held")

        step("resume the tenant and see it drain")
        d.get(BASE + "/ui/tenants")
        w.until(EC.element_to_be_clickable((By.CSS_SELECTOR,
                                            '[data-resume-tenant="acme"]'))).click()
        w.until(EC.presence_of_element_located((By.CSS_SELECTOR,
                                                '[data-pause-tenant="acme"]')))
        holds = api("GET", "/v1/stats")["holds"]
        assert not [p for p in holds if p.get("scope") == "tenant"], holds
        assert text('[data-hold="acme"]') == "no"
        WebDriverWait(d, WAIT_S).until(
            lambda _: api("GET", "/v1/messages/acme-sms/a-1")["state"] == "accepted")
        by_key = mock_stats().get("by_key", {})
        assert by_key.get("key-acme", {}).get("accepted") == 1, by_key

        step("inbox and audit views")
        for path, css, name in (("/ui/inbox", "#empty, #inbox", "inbox"),
                                ("/ui/audit", "#verify-btn", "audit")):
            d.get(BASE + path)
            w.until(EC.presence_of_element_located((By.CSS_SELECTOR, css)))
            shot(name)
        d.find_element(By.ID, "verify-btn").click()
        w.until(EC.text_to_be_present_in_element((By.ID, "verify-result"), "verifies"))
        d.find_element(By.ID, "export-day").click()  # fetched with the token, then saved
        w.until(EC.text_to_be_present_in_element((By.ID, "status"), "Exported audit-24h.jsonl"))

        step("phone-sized overview")
        d.set_window_size(390, 844)
        d.get(BASE + "/ui/")
        w.until(EC.presence_of_element_located((By.CSS_SELECTOR, '[data-total="failed"]')))
        shot("overview-phone")
        check_logs()
    except Exception as e:  # noqa: BLE001 - report any failure with a screenshot
        problems.append("step failed: %r" % (e,))
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
