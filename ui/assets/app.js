/*
 * partoo-outbox dashboard (SPEC §13). Plain JavaScript, no build step: every view is a
 * function that builds DOM nodes (textContent only, never innerHTML, so message content
 * cannot inject markup) from the documented /v1 API. The CSP forbids inline script and
 * style; nothing here needs either. Auth: a Bearer token kept in sessionStorage.
 */
"use strict";
(function () {
  const main = document.getElementById("main");
  const statusEl = document.getElementById("status");
  const TOKEN_KEY = "outbox.api_token";
  const STATES = ["queued", "sending", "accepted", "confirmed", "failed", "cancelled"];
  let refreshTimer = null;
  let charts = [];

  /* ---- DOM helpers ------------------------------------------------------------------- */

  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") el.className = v;
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? "" : String(v));
    }
    for (const kid of kids.flat()) {
      if (kid === null || kid === undefined || kid === false) continue;
      el.appendChild(typeof kid === "object" ? kid : document.createTextNode(String(kid)));
    }
    return el;
  }

  function link(href, text, attrs) {
    return h("a", Object.assign({ href: href, "data-link": "1" }, attrs || {}), text);
  }

  function enc(s) {
    return encodeURIComponent(s);
  }

  function fmtTime(iso) {
    if (!iso) return "—";
    const d = new Date(iso);
    return d.toLocaleString(undefined, { hour12: false }) ;
  }

  function fmtAge(s) {
    if (s === null || s === undefined || s === 0) return "—";
    if (s < 1) return "< 1 s";
    if (s < 120) return Math.round(s) + " s";
    if (s < 7200) return Math.round(s / 60) + " min";
    if (s < 172800) return Math.round(s / 3600) + " h";
    return Math.round(s / 86400) + " d";
  }

  function badge(state) {
    return h("span", { class: "badge st-" + state }, state);
  }

  function say(text, isError) {
    statusEl.textContent = text || "";
    statusEl.className = isError ? "error" : "";
  }

  function setView(title, ...nodes) {
    for (const c of charts) c.destroy();
    charts = [];
    main.replaceChildren(h("h1", null, title), ...nodes.filter((n) => n !== null && n !== undefined && n !== false));
    document.title = title + " · outbox";
    const here = location.pathname;
    for (const a of document.querySelectorAll("nav a")) {
      const nav = a.getAttribute("data-nav");
      const on = nav === "overview" ? here === "/ui/" || here === "/ui" : here.startsWith("/ui/" + nav);
      if (on) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
  }

  /* ---- API ------------------------------------------------------------------------------ */

  function headers(json) {
    const hd = { "X-Outbox-Client": "dashboard" };
    const tok = sessionStorage.getItem(TOKEN_KEY);
    if (tok) hd.Authorization = "Bearer " + tok;
    if (json) hd["Content-Type"] = "application/json";
    return hd;
  }

  /* Asks for the token until /v1/auth accepts it (no 401 is ever provoked). */
  async function ensureToken() {
    for (;;) {
      const r = await fetch("/v1/auth", { headers: headers(false), credentials: "omit", cache: "no-store" });
      const j = await r.json();
      if (!j.token_required || j.token_valid) return;
      const tok = await promptToken(sessionStorage.getItem(TOKEN_KEY) ? "That token was refused." : "");
      sessionStorage.setItem(TOKEN_KEY, tok);
    }
  }

  function promptToken(problem) {
    const dlg = document.getElementById("token");
    const input = document.getElementById("token-input");
    const form = document.getElementById("token-form");
    let note = document.getElementById("token-problem");
    if (!note) {
      note = h("p", { id: "token-problem", class: "error", role: "alert" });
      form.insertBefore(note, form.querySelector("label"));
    }
    note.textContent = problem;
    input.value = "";
    return new Promise((resolve) => {
      function done(ev) {
        ev.preventDefault();
        if (!input.value) return;
        form.removeEventListener("submit", done);
        dlg.close();
        resolve(input.value.trim());
      }
      form.addEventListener("submit", done);
      dlg.addEventListener("cancel", (ev) => ev.preventDefault());
      dlg.showModal();
      input.focus();
    });
  }

  async function api(method, path, body) {
    const opts = { method: method, headers: headers(body !== undefined), credentials: "omit", cache: "no-store" };
    if (body !== undefined) opts.body = JSON.stringify(body);
    let r = await fetch(path, opts);
    if (r.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      await ensureToken();
      opts.headers = headers(body !== undefined);
      r = await fetch(path, opts);
    }
    const j = await r.json().catch(() => null);
    if (!r.ok) {
      const e = j && j.error ? j.error : {};
      const err = new Error((e.message || "HTTP " + r.status) + (e.field ? " (" + e.field + ")" : ""));
      err.status = r.status;
      throw err;
    }
    return j;
  }

  function confirmDialog(text, yesLabel) {
    const dlg = document.getElementById("confirm");
    document.getElementById("confirm-text").textContent = text;
    document.getElementById("confirm-yes").textContent = yesLabel || "Confirm";
    return new Promise((resolve) => {
      dlg.addEventListener("close", () => resolve(dlg.returnValue === "ok"), { once: true });
      dlg.returnValue = "";
      dlg.showModal();
      document.getElementById("confirm-no").focus();
    });
  }

  /* ---- routing ------------------------------------------------------------------------- */

  function go(href) {
    history.pushState(null, "", href);
    route();
  }

  document.addEventListener("click", (ev) => {
    const a = ev.target.closest("a");
    if (!a || ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey) return;
    const href = a.getAttribute("href");
    if (!href || !href.startsWith("/ui")) return;
    ev.preventDefault();
    go(href);
  });
  window.addEventListener("popstate", route);

  async function route() {
    if (refreshTimer) clearTimeout(refreshTimer);
    refreshTimer = null;
    say("");
    const parts = location.pathname.replace(/^\/ui\/?/, "").split("/").filter((p) => p !== "").map(decodeURIComponent);
    const q = new URLSearchParams(location.search);
    try {
      if (parts.length === 0 || parts[0] === "overview") await viewOverview();
      else if (parts[0] === "messages" && parts.length === 3) await viewMessage(parts[1], parts[2]);
      else if (parts[0] === "messages") await viewMessages(q);
      else if (parts[0] === "conversations" && parts.length === 3) await viewConversation(parts[1], parts[2]);
      else if (parts[0] === "inbox") await viewInbox(q);
      else if (parts[0] === "tenants") await viewTenants();
      else if (parts[0] === "audit") await viewAudit();
      else setView("Not found", h("p", null, "No such view. "), link("/ui/", "Back to the overview"));
    } catch (e) {
      say(e.message, true);
    }
    main.focus({ preventScroll: true });
  }

  /* ---- overview ------------------------------------------------------------------------ */

  /* Each channel row names its tenant ("default": the configured key's). */
  function countsTable(stats) {
    const head = h("tr", null, h("th", { scope: "col" }, "Channel"), STATES.map((s) => h("th", { scope: "col", class: "num" }, s)),
      h("th", { scope: "col" }, "Oldest queued"), h("th", { scope: "col" }, "Hold"));
    const held = new Set((stats.holds || []).filter((p) => p.scope === "channel").map((p) => p.channel_id));
    const heldTenants = new Set((stats.holds || []).filter((p) => p.scope === "tenant").map((p) => p.tenant));
    const rows = stats.channels.map((c) =>
      h("tr", null,
        h("th", { scope: "row" }, link("/ui/messages?channel_id=" + enc(c.channel_id), c.channel_id)),
        STATES.map((s) => h("td", { class: "num", "data-count": c.channel_id + ":" + s },
          c.counts[s] ? link("/ui/messages?state=" + s + "&channel_id=" + enc(c.channel_id), String(c.counts[s])) : "0")),
        h("td", null, fmtAge(c.oldest_queued_age_s)),
        h("td", null, held.has(c.channel_id)
          ? h("button", { type: "button", class: "small", "data-resume": c.channel_id, onclick: () => pauseChannel(c.channel_id, false) }, "Resume")
          : h("button", { type: "button", class: "small", "data-pause": c.channel_id, onclick: () => pauseChannel(c.channel_id, true) }, "Pause"),
          heldTenants.has(c.tenant)
            ? h("span", { class: "hint", "data-tenant-hold": c.channel_id }, " held with tenant ", link("/ui/tenants", c.tenant)) : null)));
    return h("div", { class: "scroll" }, h("table", { class: "grid", id: "channels" },
      h("caption", null, "Messages per state and channel"), h("thead", null, head), h("tbody", null, rows)));
  }

  /* Messages per state and tenant, when there is more than the configured key's. */
  function tenantCounts(stats) {
    const list = stats.tenants || [];
    if (!list.some((t) => t.tenant !== "default")) return null;
    const head = h("tr", null, h("th", { scope: "col" }, "Tenant"), STATES.map((s) => h("th", { scope: "col", class: "num" }, s)));
    return h("div", { class: "scroll" }, h("table", { class: "grid", id: "tenant-counts" },
      h("caption", null, "Messages per state and tenant"), h("thead", null, head),
      h("tbody", null, list.map((t) => h("tr", null, h("th", { scope: "row" }, link("/ui/tenants", t.tenant)),
        STATES.map((s) => h("td", { class: "num", "data-tenant-count": t.tenant + ":" + s }, String(t.counts[s] || 0))))))));
  }

  async function pauseChannel(channel, pause) {
    if (pause && !(await confirmDialog("Pause channel " + channel + "? Its queued messages are held: nothing is sent and no attempt is used until you resume.", "Pause")))
      return;
    try {
      await api("POST", pause ? "/v1/pause" : "/v1/resume", { channel_id: channel, reason: "paused from the dashboard" });
      say((pause ? "Paused " : "Resumed ") + channel);
      await viewOverview();
    } catch (e) {
      say(e.message, true);
    }
  }

  function chart(title, data, bucket, el) {
    if (typeof uPlot === "undefined") return;
    const colors = { sent: "#1f5fbf", accepted: "#1b7a3d", failed: "#b3261e", confirmed: "#6b3fa0" };
    const kinds = ["sent", "accepted", "failed", "confirmed"];
    const width = Math.max(280, Math.min(el.clientWidth || 600, 900));
    const opts = {
      title: title, width: width, height: 200,
      series: [{}].concat(kinds.map((k) => ({ label: k, stroke: colors[k], width: 2, points: { show: false } }))),
      axes: [{}, { size: 50 }],
      scales: { x: { time: true } },
    };
    charts.push(new uPlot(opts, [data.t].concat(kinds.map((k) => data[k])), el));
  }

  async function viewOverview() {
    const [stats, hour, week] = await Promise.all([
      api("GET", "/v1/stats/overview"), api("GET", "/v1/stats/history?range=hour"), api("GET", "/v1/stats/history?range=week")]);
    const total = {};
    for (const s of STATES) total[s] = stats.counts[s] || 0;
    const cards = h("ul", { class: "cards", id: "totals" }, STATES.map((s) =>
      h("li", { class: "card" }, h("span", { class: "label" }, s), h("span", { class: "value", "data-total": s }, String(total[s])))));
    const holds = stats.holds || [];
    const pausedBy = stats.paused;
    const facts = h("dl", { class: "facts" },
      h("dt", null, "Tenants"), h("dd", { id: "tenants-link" }, link("/ui/tenants", "per tenant: counts, pauses, holds and nodes")),
      h("dt", null, "Oldest queued"), h("dd", null, fmtAge(stats.oldest_queued_age_s)),
      h("dt", null, "Sent last minute"), h("dd", null, String(stats.send_rate_per_min)),
      h("dt", null, "Circuit"), h("dd", { id: "circuit" }, stats.circuit === "open" ? "open (Partoo unreachable)" : (stats.circuit || "—").replace("_", "-")),
      h("dt", null, "Sending paused"), h("dd", { id: "paused" }, pausedBy ? pausedBy.reason + (pausedBy.until ? " until " + fmtTime(pausedBy.until) : "") : "no"),
      h("dt", null, "Holds"), h("dd", { id: "holds" }, holds.length ? holds.map((p) =>
        h("span", { class: "hold" }, p.scope + " ", p.scope === "tenant" ? link("/ui/tenants", p.tenant) : p.channel_id,
          " (" + fmtHold(p) + ") ")) : "none"));
    const sum = (d, k) => d[k].reduce((a, b) => a + b, 0);
    const describe = (d, span) => "Chart, " + span + ": sent " + sum(d, "sent") + ", accepted " + sum(d, "accepted") +
      ", failed " + sum(d, "failed") + ", confirmed " + sum(d, "confirmed") + ".";
    const c1 = h("div", { class: "chart", id: "chart-hour", role: "img", "aria-label": describe(hour, "per minute over the last hour") });
    const c2 = h("div", { class: "chart", id: "chart-week", role: "img", "aria-label": describe(week, "per hour over the last 7 days") });
    setView("Overview", cards, facts, tenantCounts(stats), countsTable(stats),
      h("section", { "aria-label": "History" }, h("h2", null, "History"), c1, c2));
    chart("Per minute, last hour", hour, 60, c1);
    chart("Per hour, last 7 days", week, 3600, c2);
    refreshTimer = setTimeout(() => { if (!document.querySelector("dialog[open]")) viewOverview().catch((e) => say(e.message, true)); }, 5000);
  }

  /* ---- messages ------------------------------------------------------------------------ */

  function filterForm(q) {
    const field = (name, label, input) => h("div", { class: "field" }, h("label", { for: "f-" + name }, label), input);
    const sel = h("select", { id: "f-state", name: "state" }, h("option", { value: "" }, "any"),
      STATES.concat(["unconfirmed"]).map((s) => h("option", { value: s, selected: q.get("state") === s }, s)));
    const form = h("form", { class: "filters", id: "filters", role: "search" },
      field("state", "State", sel),
      field("channel_id", "Channel", h("input", { id: "f-channel_id", name: "channel_id", value: q.get("channel_id") || "" })),
      field("conversation", "Conversation", h("input", { id: "f-conversation", name: "conversation", value: q.get("conversation") || "" })),
      field("q", "external_message_id", h("input", { id: "f-q", name: "q", value: q.get("q") || "", placeholder: "exact id" })),
      field("created_after", "Created from (local time)", h("input", { id: "f-created_after", name: "created_after", type: "datetime-local", step: "1", value: localInput(q.get("created_after")) })),
      field("created_before", "Created before (local time)", h("input", { id: "f-created_before", name: "created_before", type: "datetime-local", step: "1", value: localInput(q.get("created_before")) })),
      h("div", { class: "field" }, h("button", { type: "submit", id: "apply" }, "Apply")));
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const p = new URLSearchParams();
      for (const n of ["state", "channel_id", "conversation", "q"]) {
        const v = form.elements[n].value.trim();
        if (v) p.set(n, v);
      }
      /* The inputs are local time; the deep link and the API carry UTC (RFC 3339). */
      for (const n of ["created_after", "created_before"]) {
        const d = new Date(form.elements[n].value);
        if (form.elements[n].value && !isNaN(d)) p.set(n, d.toISOString());
      }
      go("/ui/messages" + (p.toString() ? "?" + p : ""));
    });
    return form;
  }

  /* An RFC 3339 time as a datetime-local input's value (local time, to the second). */
  function localInput(iso) {
    const d = new Date(iso || "");
    if (!iso || isNaN(d)) return "";
    return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 19);
  }

  function messageRow(m) {
    return h("tr", null,
      h("td", null, link("/ui/messages/" + enc(m.channel_id) + "/" + enc(m.external_message_id), m.external_message_id, { class: "msg-link" })),
      h("td", null, m.channel_id),
      h("td", null, link("/ui/conversations/" + enc(m.channel_id) + "/" + enc(m.external_conversation_id), m.external_conversation_id)),
      h("td", null, badge(m.state)),
      h("td", { class: "num" }, String(m.attempts)),
      h("td", null, fmtTime(m.created_at)),
      h("td", { class: "reason" }, m.state_reason || ""));
  }

  async function viewMessages(q) {
    const form = filterForm(q);
    const id = q.get("q");
    const conv = q.get("conversation");
    const channel = q.get("channel_id");
    if (id) {
      if (channel) {
        go("/ui/messages/" + enc(channel) + "/" + enc(id));
        return;
      }
      const f = await api("GET", "/v1/messages/find?external_message_id=" + enc(id));
      if (f.matches.length === 1) {
        history.replaceState(null, "", "/ui/messages/" + enc(f.matches[0].channel_id) + "/" + enc(id));
        await viewMessage(f.matches[0].channel_id, id);
        return;
      }
      setView("Messages", form, f.matches.length === 0 ? h("p", { id: "no-match" }, "No message has the id " + id + ".")
        : h("ul", null, f.matches.map((m) => h("li", null, link("/ui/messages/" + enc(m.channel_id) + "/" + enc(id), m.channel_id + " / " + id)))));
      return;
    }
    if (conv && channel) {
      go("/ui/conversations/" + enc(channel) + "/" + enc(conv));
      return;
    }
    const p = new URLSearchParams();
    for (const n of ["state", "channel_id", "cursor", "created_after", "created_before"]) if (q.get(n)) p.set(n, q.get(n));
    p.set("limit", "50");
    const list = await api("GET", "/v1/messages?" + p);
    const tbody = h("tbody", null, list.messages.map(messageRow));
    const table = h("div", { class: "scroll" }, h("table", { class: "grid", id: "messages" },
      h("caption", null, "Messages, newest first"),
      h("thead", null, h("tr", null, ["external_message_id", "channel", "conversation", "state", "attempts", "created", "reason"].map((t) => h("th", { scope: "col" }, t)))),
      tbody));
    const pager = h("nav", { class: "pager", "aria-label": "Pages" },
      q.get("cursor") ? link(location.pathname + "?" + withParam(q, "cursor", null), "First page") : null,
      list.next_cursor ? link(location.pathname + "?" + withParam(q, "cursor", list.next_cursor), "Next page", { id: "next-page" }) : null);
    const st = q.get("state");
    const bulk = h("div", { class: "bulk", "aria-label": "Bulk actions" },
      st === "failed" || st === "accepted" ? h("button", { type: "button", id: "bulk-retry", onclick: () => bulkAction(q, true) }, "Retry all matching…") : null,
      st === "queued" ? h("button", { type: "button", id: "bulk-cancel", class: "danger", onclick: () => bulkAction(q, false) }, "Cancel all matching…") : null,
      st ? null : h("p", { class: "hint" }, "Filter by state failed, accepted or queued to retry or cancel every matching message."));
    setView("Messages", form, bulk, list.messages.length ? table : h("p", { id: "empty" }, "No messages match."), pager);
  }

  function withParam(q, name, value) {
    const p = new URLSearchParams(q);
    if (value === null) p.delete(name);
    else p.set(name, value);
    return p.toString();
  }

  function filterQuery(q) {
    const p = new URLSearchParams();
    if (q.get("state")) p.set("state", q.get("state"));
    if (q.get("channel_id")) p.set("channel_id", q.get("channel_id"));
    if (q.get("conversation")) p.set("external_conversation_id", q.get("conversation"));
    for (const n of ["created_after", "created_before"]) if (q.get(n)) p.set(n, q.get(n));
    return p;
  }

  /* Counts, asks, then works through the set in bounded batches (resumable: rerun it). */
  async function bulkAction(q, retry) {
    const p = filterQuery(q);
    try {
      const c = await api("GET", "/v1/messages/count?" + p);
      const n = c.count + (c.capped ? "+" : "");
      if (c.count === 0) { say("Nothing matches."); return; }
      if (!(await confirmDialog((retry ? "Retry " : "Cancel ") + n + " message(s) matching this filter?", retry ? "Retry " + n : "Cancel " + n)))
        return;
      let done = 0;
      p.set("limit", "500");
      for (;;) {
        const r = await api("POST", "/v1/messages/" + (retry ? "retry" : "cancel") + "?" + p);
        done += r.touched;
        say((retry ? "Retried " : "Cancelled ") + done + " so far…");
        if (r.touched === 0 || r.remaining === 0) break;
      }
      await viewMessages(q);
      say((retry ? "Retried " : "Cancelled ") + done + " message(s).");
    } catch (e) {
      say(e.message, true);
    }
  }

  /* ---- one message -------------------------------------------------------------------- */

  async function viewMessage(channel, id) {
    let m;
    try {
      m = await api("GET", "/v1/messages/" + enc(channel) + "/" + enc(id));
    } catch (e) {
      if (e.status !== 404) throw e;
      setView("Message " + id, h("p", { id: "not-found" }, "No message " + id + " in channel " + channel + "."));
      return;
    }
    const dl = h("dl", { class: "facts", id: "fields" });
    const add = (k, v) => { dl.append(h("dt", null, k), h("dd", { "data-field": k }, v === null || v === undefined || v === "" ? "—" : v)); };
    add("state", badge(m.state));
    add("state_reason", m.state_reason);
    add("channel_id", m.channel_id);
    add("conversation", link("/ui/conversations/" + enc(m.channel_id) + "/" + enc(m.external_conversation_id), m.external_conversation_id));
    add("business_id", m.business_id);
    add("sender_type", m.sender_type);
    add("priority", String(m.priority));
    add("attempts", String(m.attempts));
    add("resends", String(m.resends));
    add("created_at", fmtTime(m.created_at));
    add("next_attempt_at", fmtTime(m.next_attempt_at));
    add("accepted_at", fmtTime(m.accepted_at));
    add("confirmed_at", fmtTime(m.confirmed_at));
    add("confirmation", m.confirmed_at ? "confirmed by Partoo" : m.unconfirmed ? "not confirmed (resends exhausted)" : m.accepted_at ? "accepted, awaiting confirmation" : "—");
    add("partoo_message_id", m.partoo_message_id);
    add("partoo_status", m.partoo_status);
    add("last_error", m.last_error);
    const content = h("pre", { class: "content" }, m.content);
    const actions = h("div", { class: "bulk" },
      m.state === "failed" || m.state === "accepted" ? h("button", { type: "button", id: "retry", onclick: () => act(m, "retry") }, "Retry") : null,
      m.state === "queued" ? h("button", { type: "button", id: "cancel", class: "danger", onclick: () => act(m, "cancel") }, "Cancel") : null);
    const timeline = h("ol", { class: "timeline", id: "timeline" }, m.transitions.map((t) =>
      h("li", null, h("time", null, fmtTime(t.at)), " ", badge(t.from), " → ", badge(t.to), " ", h("span", { class: "reason" }, t.reason))));
    const attempts = h("div", { class: "scroll" }, h("table", { class: "grid", id: "attempts" },
      h("caption", null, "Attempts"),
      h("thead", null, h("tr", null, ["started", "duration", "status", "outcome", "error", "response excerpt"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", null, m.attempts_log.map((a) => h("tr", null,
        h("td", null, fmtTime(a.started_at)), h("td", { class: "num" }, a.duration_ms + " ms"),
        h("td", { class: "num" }, a.http_status === null ? "—" : String(a.http_status)), h("td", null, a.outcome),
        h("td", null, a.error || ""), h("td", null, h("code", null, a.response_excerpt || "")))))));
    setView("Message " + m.external_message_id, actions, dl, h("h2", null, "Content"), content,
      h("h2", null, "Timeline"), timeline, h("h2", null, "Attempts"), m.attempts_log.length ? attempts : h("p", null, "No attempt yet."));
    if (m.state === "queued" || m.state === "sending")
      refreshTimer = setTimeout(() => viewMessage(channel, id).catch((e) => say(e.message, true)), 2000);
  }

  async function act(m, what) {
    if (what === "cancel" && !(await confirmDialog("Cancel message " + m.external_message_id + "? It will never be sent.", "Cancel message")))
      return;
    try {
      await api("POST", "/v1/messages/" + enc(m.channel_id) + "/" + enc(m.external_message_id) + "/" + what);
      say(what === "retry" ? "Retried." : "Cancelled.");
      await viewMessage(m.channel_id, m.external_message_id);
    } catch (e) {
      say(e.message, true);
    }
  }

  /* ---- conversation ---------------------------------------------------------------------- */

  async function viewConversation(channel, conv) {
    const c = await api("GET", "/v1/conversations/" + enc(channel) + "/" + enc(conv) + "?limit=500");
    const waiting = c.messages.some((m) => !m.head && (m.state === "queued" || m.state === "sending"));
    const rows = c.messages.map((m, i) => {
      const holding = m.head && (m.state === "queued" || m.state === "sending") && waiting;
      return h("tr", { class: holding ? "holding" : null },
        h("td", { class: "num" }, String(i + 1)),
        h("td", null, link("/ui/messages/" + enc(channel) + "/" + enc(m.external_message_id), m.external_message_id)),
        h("td", null, badge(m.state), holding ? h("strong", { class: "holds-back" }, " holds the rest back") : null),
        h("td", { class: "num" }, String(m.attempts)), h("td", null, fmtTime(m.created_at)), h("td", { class: "reason" }, m.last_error || m.state_reason || ""));
    });
    setView("Conversation " + conv, h("p", null, "Channel " + channel + ". Its unfinished messages in sending order (or its last message when all are finished): each waits until the one before it is finished." + (c.truncated ? " Only the first 500 are shown." : "")),
      h("div", { class: "scroll" }, h("table", { class: "grid", id: "conversation" }, h("caption", null, "Messages in order"),
        h("thead", null, h("tr", null, ["#", "external_message_id", "state", "attempts", "created", "reason / error"].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", null, rows))));
  }

  /* ---- inbox and audit --------------------------------------------------------------------- */

  async function viewInbox(q) {
    const p = new URLSearchParams({ limit: "100" });
    if (q.get("cursor")) p.set("cursor", q.get("cursor"));
    const r = await api("GET", "/v1/inbox?" + p);
    const rows = r.replies.map((x) => h("tr", null, h("td", { class: "num" }, String(x.id)), h("td", null, x.channel_id || ""),
      h("td", null, x.external_conversation_id || ""), h("td", null, x.sender_label || x.sender_type || ""),
      h("td", null, x.content || ""), h("td", null, x.state || ""),
      h("td", null, h("button", { type: "button", class: "small", onclick: async () => { await api("POST", "/v1/inbox/" + x.id + "/ack"); await viewInbox(q); } }, "Acknowledge"))));
    setView("Inbox", r.replies.length ? h("div", { class: "scroll" }, h("table", { class: "grid", id: "inbox" }, h("caption", null, "Replies not acknowledged yet"),
      h("thead", null, h("tr", null, ["id", "channel", "conversation", "from", "content", "state", ""].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", null, rows))) : h("p", { id: "empty" }, "No reply waits."),
      r.next_cursor ? link("/ui/inbox?cursor=" + enc(r.next_cursor), "Next page") : null);
  }

  async function viewAudit() {
    const box = h("div", { id: "verify" }, h("button", { type: "button", id: "verify-btn", onclick: verify }, "Verify the chain now"));
    async function verify() {
      box.replaceChildren(h("p", null, "Verifying…"));
      try {
        /* In slices (each call at most ~50 ms on serve's loop): call again until done. */
        let r = await api("GET", "/v1/audit/verify");
        while (!r.done) {
          box.replaceChildren(h("p", { id: "verify-progress" }, "Verifying… " + r.verified_seals + " seals, " + r.checked + " rows so far."));
          r = await api("GET", "/v1/audit/verify?cursor=" + enc(r.cursor));
        }
        box.replaceChildren(h("p", { class: r.ok ? "ok" : "error", id: "verify-result" },
          r.ok ? "The chain verifies: " + r.checked + " sealed rows, " + r.unsealed + " not sealed yet." : "Broken at row " + r.first_bad_id + ": " + r.problem));
      } catch (e) {
        box.replaceChildren(h("p", { class: "error" }, e.message));
      }
    }
    /* The export needs the Bearer header, so it is fetched and handed over as a file. */
    async function download(path, name) {
      try {
        const r = await fetch(path, { headers: headers(false), credentials: "omit", cache: "no-store" });
        if (!r.ok) throw new Error("export failed: HTTP " + r.status);
        const url = URL.createObjectURL(await r.blob());
        const a = h("a", { href: url, download: name });
        document.body.appendChild(a);
        a.click();
        a.remove();
        setTimeout(() => URL.revokeObjectURL(url), 10000);
        say("Exported " + name);
      } catch (e) {
        say(e.message, true);
      }
    }
    const since = Date.now() - 86400000;
    setView("Audit", h("p", null, "Every state change and attempt, with the dashboard's actions among them, is in the audit trail, chained by hashes."), box,
      h("h2", null, "Export (JSON Lines)"),
      h("div", { class: "bulk" },
        h("button", { type: "button", id: "export-day", onclick: () => download("/v1/audit/export?since_ms=" + since, "audit-24h.jsonl") }, "Last 24 hours"),
        h("button", { type: "button", id: "export-all", onclick: () => download("/v1/audit/export", "audit.jsonl") }, "Everything (100,000 rows per file)")),
      h("p", { class: "hint" }, "On the host: outbox audit export and outbox audit verify."));
  }

  /* ---- tenants and nodes ------------------------------------------------------------------- */

  const PAUSE_WHY = { auth: "Partoo refused the key", rate_limited: "Partoo answered 429",
    circuit_open: "Partoo unreachable", no_key: "no API key" };
  const SHOW_CHANNELS = 20; /* names listed per tenant; the rest are counted */

  function fmtPause(p) {
    if (!p) return "no";
    return p.reason + (PAUSE_WHY[p.reason] ? " (" + PAUSE_WHY[p.reason] + ")" : "") + (p.until ? " until " + fmtTime(p.until) : "");
  }

  function fmtHold(p) {
    return p.reason + ", by " + p.by + ", since " + fmtTime(p.since);
  }

  function fmtRate(perMin, configured) {
    if (perMin === null || perMin === undefined) return configured ? "configured" : "—";
    return (perMin === 0 ? "unlimited" : perMin + "/min") + (configured ? " (configured)" : "");
  }

  /* A tenant's channels: how many, then the first names, each a link to its messages. */
  function channelList(list, truncated) {
    const shown = list.slice(0, SHOW_CHANNELS);
    const more = list.length - shown.length;
    const names = [];
    shown.forEach((c, i) => {
      if (i) names.push(", ");
      names.push(link("/ui/messages?channel_id=" + enc(c.channel_id), c.channel_id), c.readonly ? " (read-only)" : null);
    });
    return h("td", { class: "channels" }, h("span", { class: "n" }, list.length + (truncated ? "+" : "")),
      list.length ? ": " : null, names, more > 0 || truncated ? h("span", { class: "hint" }, " and more") : null);
  }

  /* One row per tenant: the registry's, by name, then default when it has messages or the
   * worker knows it. Counts come from the overview's kept counts (no count over the outbox:
   * SPEC §13, every call < 100 ms with 1,000,000 messages). */
  function tenantRows(reg, ov) {
    const regd = new Map(reg.tenants.map((t) => [t.tenant, t]));
    const counts = new Map((ov.tenants || []).map((t) => [t.tenant, t.counts]));
    const paused = new Map((ov.tenant_pauses || []).map((p) => [p.tenant, p]));
    const held = new Map((ov.holds || []).filter((p) => p.scope === "tenant").map((p) => [p.tenant, p]));
    const names = [...regd.keys()].sort();
    if (!regd.has("default") && (counts.has("default") || held.has("default") || (paused.has("default") && paused.get("default").reason !== "no_key")))
      names.push("default");
    return names.map((name) => {
      const r = regd.get(name);
      const c = counts.get(name);
      const hold = held.get(name);
      const chans = r ? r.channels : ov.channels.filter((ch) => ch.tenant === "default").map((ch) => ({ channel_id: ch.channel_id, readonly: false }));
      return h("tr", { "data-tenant": name },
        h("th", { scope: "row" }, name),
        h("td", null, r ? h("code", null, r.key_fingerprint) : "configured key"),
        h("td", { class: "num" }, r ? fmtRate(r.rate_limit_per_min, r.rate_limit_per_min === null) : "configured"),
        channelList(chans, false),
        ["queued", "sending", "accepted", "failed"].map((st) => h("td", { class: "num", "data-tcount": name + ":" + st }, String(c ? c[st] || 0 : 0))),
        h("td", { "data-paused": name }, fmtPause(paused.get(name))),
        h("td", { class: "held-by", "data-hold": name }, hold ? fmtHold(hold) : "no"),
        h("td", null, hold
          ? h("button", { type: "button", class: "small", "data-resume-tenant": name, onclick: () => pauseTenant(name, false) }, "Resume")
          : h("button", { type: "button", class: "small", "data-pause-tenant": name, onclick: () => pauseTenant(name, true) }, "Pause")));
    });
  }

  function tenantsTable(reg, ov) {
    const rows = tenantRows(reg, ov);
    if (!rows.length)
      return h("p", { id: "no-tenants" },
        "No tenant is configured, and there is no default API key: messages wait queued until a tenant owns their channel. Add one on the host with ",
        h("code", null, "outbox tenant add NAME --api-key-stdin --channel ID"), " or through the API with ",
        h("code", null, "PUT /v1/tenants/{name}"), ".");
    const cols = ["Tenant", "Key fingerprint", "Rate limit", "Channels", "queued", "sending", "accepted", "failed", "Worker pause", "Hold", ""];
    return h("div", { class: "scroll" }, h("table", { class: "grid", id: "tenants" },
      h("caption", null, "Tenants: messages per state, pauses and holds"),
      h("thead", null, h("tr", null, cols.map((t, i) => h("th", { scope: "col", class: i >= 4 && i <= 7 ? "num" : null }, t)))),
      h("tbody", null, rows)));
  }

  /* fmtAge for a heartbeat in milliseconds (fmtAge shows 0 as "—"). */
  function fmtBeat(ms) {
    if (ms === null || ms === undefined) return "—";
    return (ms < 1000 ? Math.round(ms) + " ms" : fmtAge(ms / 1000)) + " ago";
  }

  /* GET /v1/nodes: null (an older server answers 404: nothing is shown), else a section. */
  function nodesSection(nodes) {
    if (!nodes) return null;
    let body;
    if (nodes.backend === "sqlite")
      body = h("p", { id: "single-node" }, "A single node: this serve process, on its SQLite file (several nodes need PostgreSQL).");
    else if (!nodes.nodes.length)
      body = h("p", { id: "no-nodes" }, "No node has reported yet.");
    else
      body = h("div", { class: "scroll" }, h("table", { class: "grid", id: "nodes" },
        h("caption", null, "Nodes sharing the database and the tenants each sends for"),
        h("thead", null, h("tr", null, ["Node", "State", "Last beat", "Tenants held"].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", null, nodes.nodes.map((n) => h("tr", { "data-node": n.name },
          h("th", { scope: "row" }, n.name),
          h("td", { class: n.live ? "ok" : "error" }, n.live ? "live" : "gone"),
          h("td", null, fmtBeat(n.beat_age_ms)),
          h("td", null, n.tenants && n.tenants.length ? n.tenants.map((t) => t.tenant + " (epoch " + t.epoch + ")").join(", ") : "none"))))));
    return h("section", { "aria-label": "Nodes" }, h("h2", null, "Nodes"), body);
  }

  async function viewTenants() {
    const [reg, ov, nodes] = await Promise.all([api("GET", "/v1/tenants"), api("GET", "/v1/stats/overview"),
      api("GET", "/v1/nodes").catch((e) => { if (e.status === 404) return null; throw e; })]);
    setView("Tenants and nodes",
      h("div", { class: "bulk" },
        h("button", { type: "button", id: "refresh", class: "small", onclick: () => viewTenants().catch((e) => say(e.message, true)) }, "Refresh")),
      tenantsTable(reg, ov),
      nodesSection(nodes));
  }

  async function pauseTenant(name, pause) {
    if (pause && !(await confirmDialog("Pause tenant " + name + "? The queued messages of all its channels are held: nothing is sent and no attempt is used until you resume.", "Pause")))
      return;
    try {
      await api("POST", pause ? "/v1/pause" : "/v1/resume", pause ? { tenant: name, reason: "paused from the dashboard" } : { tenant: name });
      await viewTenants();
      say((pause ? "Paused tenant " : "Resumed tenant ") + name);
    } catch (e) {
      say(e.message, true);
    }
  }

  /* ---- start --------------------------------------------------------------------------- */

  ensureToken().then(route).catch((e) => say(e.message, true));
})();
