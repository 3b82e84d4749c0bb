"""The browser side shared by the dashboard's browser tests (ui_browser.py on SQLite,
ui_browser_pg.py on PostgreSQL): headless Chromium under Selenium, and the checks every step
ends with (no console error, no request leaving the dashboard's origin).
"""
import json
import tempfile
import time
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By


def start_chromium(tmp_dir):
    """Headless Chromium with a fresh profile under tmp_dir, logging console and network."""
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1280,900", "--no-first-run", "--disable-extensions",
              "--disable-background-networking", "--disable-component-update",
              "--user-data-dir=" + tempfile.mkdtemp(dir=tmp_dir)):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)


def collect_problems(d, origin, problems):
    """Appends to problems every console error and every request to another origin since
    the last call."""
    for e in d.get_log("browser"):
        if e.get("level") == "SEVERE":
            problems.append("console error: " + e.get("message", ""))
    for e in d.get_log("performance"):
        m = json.loads(e["message"])["message"]
        if m.get("method") == "Network.requestWillBeSent":
            url = m["params"]["request"]["url"]
            # chrome:// and the like are the browser's own pages (a new tab), not the
            # dashboard's requests.
            if url.split(":", 1)[0] in ("chrome", "chrome-untrusted", "devtools", "about"):
                continue
            if not (url.startswith(origin + "/") or url.startswith("data:")):
                problems.append("request to another origin: " + url)


def text(d, css):
    """The text of the element at css. A view re-renders as a whole (the overview every
    5 s, any view after an action): an element may be replaced between finding it and
    reading it; then the new one is read."""
    for _ in range(5):
        try:
            return d.find_element(By.CSS_SELECTOR, css).text
        except StaleElementReferenceException:
            time.sleep(0.1)
    return d.find_element(By.CSS_SELECTOR, css).text


def mock_stats(mock_base):
    with urllib.request.urlopen(mock_base + "/_mock/stats", timeout=10) as resp:
        return json.loads(resp.read())


def step(name):
    print("step:", name, flush=True)
