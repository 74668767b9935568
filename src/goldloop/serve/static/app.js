// goldloop review page: keyboard-first triage. Items are prefetched, so a key press never waits
// for the network; every decision goes into an outbox (kept in localStorage) that is sent in order
// and retried until the server confirms it. Each decision carries an id made here, so a retry is
// never stored twice. Record text is untrusted: it is only ever set with textContent.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const state = {
    me: null, current: null, buffer: [], history: [], outbox: [], busy: false, failures: 0,
    editing: false, exhausted: false, decided: 0, keyAt: 0, timer: null,
  };

  // ---- small helpers -------------------------------------------------------------------
  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }
  function uid() {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  function notice(text) { $("notice").textContent = text || ""; }
  function setNet(text, bad) { $("net").textContent = text; $("net").classList.toggle("bad", !!bad); }

  async function api(method, path, body) {
    const options = { method, credentials: "same-origin", headers: {} };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.headers["X-CSRF-Token"] = state.me ? state.me.csrf_token : "";
      options.body = JSON.stringify(body);
    }
    const response = await fetch(path, options);
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    if (!response.ok) {
      const error = new Error((data && data.error) || response.statusText || "request failed");
      error.status = response.status;
      throw error;
    }
    return data;
  }

  // ---- word diff (for edits) -----------------------------------------------------------
  function diffWords(before, after) {
    const a = before.split(/(\s+)/), b = after.split(/(\s+)/);
    if (a.length * b.length > 4e6) return [["del", before], ["ins", after]];
    const n = a.length, m = b.length;
    const lcs = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
    for (let i = n - 1; i >= 0; i--) {
      for (let j = m - 1; j >= 0; j--) {
        lcs[i][j] = a[i] === b[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
      }
    }
    const out = [];
    const push = (kind, text) => {
      if (out.length && out[out.length - 1][0] === kind) out[out.length - 1][1] += text;
      else out.push([kind, text]);
    };
    let i = 0, j = 0;
    while (i < n && j < m) {
      if (a[i] === b[j]) { push("same", a[i]); i++; j++; }
      else if (lcs[i + 1][j] >= lcs[i][j + 1]) { push("del", a[i]); i++; }
      else { push("ins", b[j]); j++; }
    }
    while (i < n) push("del", a[i++]);
    while (j < m) push("ins", b[j++]);
    return out;
  }
  function renderDiff(node, before, after) {
    clear(node);
    for (const [kind, text] of diffWords(before, after)) {
      node.appendChild(kind === "same" ? document.createTextNode(text) : el(kind, text));
    }
  }

  // ---- outbox --------------------------------------------------------------------------
  function outboxKey() { return "goldloop.outbox." + (state.me ? state.me.name : ""); }
  function saveOutbox() {
    try { localStorage.setItem(outboxKey(), JSON.stringify(state.outbox)); } catch (e) { /* private mode */ }
  }
  function loadOutbox() {
    try { state.outbox = JSON.parse(localStorage.getItem(outboxKey()) || "[]"); } catch (e) { state.outbox = []; }
  }

  function settle(op, result) {
    if (op.path === "/api/undo" && result && result.item && !state.history.length) {
      // Undo of a decision made before this page was opened: show the item it gave back.
      if (state.current) state.buffer.unshift(state.current);
      state.current = result.item;
      render(state.keyAt);
    }
  }

  function runningLow() {
    const held = (state.current ? 1 : 0) + state.buffer.length;
    return !state.exhausted && held <= Math.ceil(state.me.prefetch / 2);
  }

  // One network loop: the outbox, in order, and topping up the buffer whenever it runs low
  // (before the next outbox entry, so fast key presses never drain it).
  async function kick() {
    if (state.busy) return;
    state.busy = true;
    try {
      while (state.outbox.length) {
        if (runningLow()) await refill();
        const op = state.outbox[0];
        try {
          const result = await api("POST", op.path, op.body);
          state.outbox.shift();
          saveOutbox();
          state.failures = 0;
          settle(op, result);
        } catch (error) {
          if (error.status === 401) { state.busy = false; showLogin("your session ended; log in again to send " + state.outbox.length + " waiting decision(s)"); return; }
          if (error.status >= 400 && error.status < 500 && ![403, 408, 425, 429].includes(error.status)) {
            state.outbox.shift();               // refused for good (e.g. someone else decided it)
            saveOutbox();
            notice("not saved: " + error.message);
            continue;
          }
          if (error.status === 403) await refreshMe();
          state.failures += 1;
          setNet("not saved yet: " + state.outbox.length + " waiting, retrying", true);
          await sleep(Math.min(250 * 2 ** state.failures, 8000));
        }
      }
      setNet(state.failures ? "" : "all saved");
      await refill();
    } finally {
      state.busy = false;
    }
    if (state.outbox.length) kick();
  }

  async function refill() {
    const held = (state.current ? 1 : 0) + state.buffer.length;
    if (held >= state.me.prefetch && !state.exhausted) return;
    if (state.exhausted && held) return;
    const have = [];
    if (state.current) have.push(state.current.queue_id);
    for (const item of state.buffer) have.push(item.queue_id);
    for (const op of state.outbox) if (op.queue_id) have.push(op.queue_id);
    let data;
    try {
      // Items whose decision is still in the outbox are leased until it lands: ask beyond them.
      const pending = state.outbox.filter((op) => op.queue_id).length;
      data = await api("POST", "/api/next", { want: Math.min(100, state.me.prefetch + pending), have });
    } catch (error) {
      if (error.status === 401) { showLogin("your session ended; log in again"); return; }
      setNet("cannot reach the server: " + error.message, true);
      scheduleRefill(3000);
      return;
    }
    const known = new Set(have);
    for (const item of data.items) if (!known.has(item.queue_id)) state.buffer.push(item);
    state.exhausted = data.items.length === 0;
    if (!state.current && state.buffer.length) { state.current = state.buffer.shift(); render(state.keyAt); }
    else if (!state.current) render(state.keyAt);
    if (state.exhausted) scheduleRefill(10000);
  }
  function scheduleRefill(ms) {
    clearTimeout(state.timer);
    state.timer = setTimeout(() => { state.exhausted = false; kick(); }, ms);
  }

  // ---- rendering -----------------------------------------------------------------------
  function seedsList(records) {
    const list = $("seeds");
    clear(list);
    const seen = new Set();
    for (const record of records) {
      for (const seed of record.seeds) {
        if (seen.has(seed.id)) continue;
        seen.add(seed.id);
        const li = el("li", seed.text);
        li.prepend(el("b", "[" + seed.label + "] "));
        list.appendChild(li);
      }
    }
    if (!seen.size) list.appendChild(el("li", "(no seeds recorded)"));
  }
  function verdictRows(records) {
    const body = $("verdicts");
    clear(body);
    records.forEach((record, index) => {
      for (const v of record.verdicts) {
        const tr = el("tr", null, v.keep ? (v.flag ? "flagged" : "") : "dropped");
        tr.appendChild(el("td", records.length > 1 ? "AB"[index] : ""));
        tr.appendChild(el("td", v.filter));
        tr.appendChild(el("td", v.keep ? (v.flag ? "kept, " + v.flag : "kept") : "dropped"));
        tr.appendChild(el("td", v.score === null || v.score === undefined ? "" : Number(v.score).toFixed(3)));
        tr.appendChild(el("td", v.reason));
        body.appendChild(tr);
      }
    });
  }

  function render(keyAt) {
    const item = state.current;
    $("item").hidden = !item;
    $("empty").hidden = !!item;
    closeEditor();
    if (item) {
      const records = item.records;
      const pair = item.kind === "pair";
      $("single").hidden = pair;
      $("pair").hidden = !pair;
      if (pair) {
        $("pair-label").textContent = records[0].label;
        $("pair-a").textContent = records[0].text;
        $("pair-b").textContent = records[1].text;
        $("pair-a-id").textContent = records[0].id.slice(0, 12);
        $("pair-b-id").textContent = records[1].id.slice(0, 12);
      } else {
        const r = records[0];
        $("text").textContent = r.text;
        $("label").textContent = r.label;
        $("strategy").textContent = r.strategy;
        $("record-id").textContent = r.id;
        $("doubt").hidden = !r.doubt;
        $("doubt").textContent = r.doubt ? "label-doubt: " + r.doubt : "";
      }
      seedsList(records);
      verdictRows(records);
      $("item").dataset.queueId = String(item.queue_id);
      $("item").dataset.kind = item.kind;
    } else {
      $("item").dataset.queueId = "";
    }
    markPaint(item ? $("item") : $("empty"), keyAt, () => {
      document.body.dataset.paintedQueueId = item ? String(item.queue_id) : "none";
    });
  }

  // Mark the paint: the frame callback runs just before the browser paints; the message
  // posted from it runs right after that paint.
  function markPaint(node, keyAt, also) {
    requestAnimationFrame(() => {
      const channel = new MessageChannel();
      channel.port1.onmessage = () => {
        node.dataset.keyAt = String(keyAt || 0);
        node.dataset.paintedAt = String(performance.now());
        if (also) also();
        document.body.dataset.paints = String(Number(document.body.dataset.paints || 0) + 1);
      };
      channel.port2.postMessage(null);
    });
  }

  function advance(keyAt) {
    state.current = state.buffer.length ? state.buffer.shift() : null;
    render(keyAt);
  }

  function showLast(entry) {
    const node = $("last");
    clear(node);
    const record = entry.item.records[0];
    const words = { accept: "accepted", reject: "rejected", skip: "skipped", edit: "edited", prefer: "preferred" };
    let head = (words[entry.action] || entry.action);
    if (entry.action === "prefer") head += " " + entry.extra.winner.toUpperCase();
    node.appendChild(el("b", head + ": "));
    if (entry.action === "edit") {
      const diff = el("span", null, "diff");
      renderDiff(diff, record.text, entry.extra.text);
      node.appendChild(diff);
      if (entry.extra.label && entry.extra.label !== record.label) node.appendChild(el("span", "  (label " + record.label + " → " + entry.extra.label + ")"));
    } else {
      node.appendChild(el("span", record.text.length > 160 ? record.text.slice(0, 160) + "…" : record.text));
    }
    node.appendChild(el("span", "   (u undoes)"));
  }

  // ---- actions -------------------------------------------------------------------------
  function decide(action, extra, keyAt) {
    const item = state.current;
    if (!item) return;
    const clientId = uid();
    const body = Object.assign({ client_id: clientId, queue_id: item.queue_id, action }, extra || {});
    state.outbox.push({ path: "/api/decide", queue_id: item.queue_id, body });
    saveOutbox();
    const entry = { item, action, extra: extra || {} };
    state.history.push(entry);
    if (state.history.length > 200) state.history.shift();
    state.decided += 1;
    showLast(entry);
    notice("");
    advance(keyAt);
    kick();
    if (state.decided % 20 === 0) refreshCounts();
  }

  function undo(keyAt) {
    const clientId = uid();
    const last = state.history.pop();
    state.outbox.push({ path: "/api/undo", queue_id: last ? last.item.queue_id : null, body: { client_id: clientId } });
    saveOutbox();
    if (last) {
      if (state.current) state.buffer.unshift(state.current);
      state.current = last.item;
      render(keyAt);
      clear($("last"));
      $("last").appendChild(el("b", "undone: " + (last.action === "prefer" ? "preference" : last.action)));
    } else {
      notice("undoing your last decision before this page was opened…");
    }
    kick();
  }

  function openEditor() {
    const item = state.current;
    if (!item || item.kind !== "single") return;
    const record = item.records[0];
    state.editing = true;
    $("editor").hidden = false;
    $("text").hidden = true;
    const select = $("edit-label");
    clear(select);
    const labels = state.me.labels.length ? state.me.labels : [record.label];
    for (const label of labels) {
      const option = el("option", label);
      option.value = label;
      if (label === record.label) option.selected = true;
      select.appendChild(option);
    }
    $("edit-text").value = record.text;
    renderDiff($("edit-diff"), record.text, record.text);
    $("edit-text").focus();
  }
  function closeEditor() {
    state.editing = false;
    $("editor").hidden = true;
    $("text").hidden = false;
  }
  function saveEdit(keyAt) {
    const record = state.current.records[0];
    const text = $("edit-text").value.trim();
    const label = $("edit-label").value;
    if (!text) { notice("an edit needs text; press Esc and reject the item instead"); return; }
    if (text === record.text && label === record.label) { notice("nothing changed; press Esc, then accept"); return; }
    $("edit-text").blur();
    decide("edit", { text, label }, keyAt);
  }

  function onKey(event) {
    const keyAt = event.timeStamp;
    if (state.editing) {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) { event.preventDefault(); saveEdit(keyAt); }
      else if (event.key === "Escape") { event.preventDefault(); closeEditor(); }
      return;
    }
    if (!$("rank").hidden) {
      if (!(event.ctrlKey || event.metaKey || event.altKey) && rankKey(event, keyAt)) event.preventDefault();
      return;
    }
    const overlay = !$("help").hidden || !$("tools").hidden;
    if (event.key === "Escape") { $("help").hidden = true; $("tools").hidden = true; return; }
    const target = event.target;
    if (target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA" || target.tagName === "SELECT")) return;
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.key === "?") { $("help").hidden = !$("help").hidden; event.preventDefault(); return; }
    if (event.key === "t" && state.me && state.me.role !== "reviewer") { openTools(); event.preventDefault(); return; }
    if (overlay || $("review").hidden) return;
    const item = state.current;
    const pair = item && item.kind === "pair";
    switch (event.key) {
      case "ArrowRight": case "a":
        if (pair) notice("a pairwise item: press 1 for A or 2 for B"); else decide("accept", null, keyAt);
        break;
      case "ArrowLeft": case "x":
        if (pair) notice("a pairwise item: press 1 for A or 2 for B"); else decide("reject", null, keyAt);
        break;
      case "e":
        if (pair) notice("pairwise items are not edited; press 1 or 2"); else openEditor();
        break;
      case "1": case "2":
        if (pair) decide("prefer", { winner: event.key === "1" ? "a" : "b" }, keyAt);
        break;
      case "s": decide("skip", null, keyAt); break;
      case "u": undo(keyAt); break;
      case "r": openRank(keyAt); break;
      default: return;
    }
    event.preventDefault();
  }

  // ---- ranking screen ------------------------------------------------------------------
  // A set of candidates of one label; the reviewer presses their numbers best first. A saved
  // ranking goes through the outbox like a decision; its records are left out of the next sets.
  const ranking = { set: null, order: [], sent: new Set(), loading: false };
  function openRank(keyAt) {
    $("help").hidden = true;
    $("rank").hidden = false;
    loadRankSet(keyAt);
  }
  async function loadRankSet(keyAt) {
    if (ranking.loading) return;
    ranking.loading = true;
    ranking.set = null;
    ranking.order = [];
    $("rank-status").textContent = "loading…";
    try {
      ranking.set = await api("POST", "/api/rank/next", { exclude: Array.from(ranking.sent).slice(-5000) });
      $("rank-status").textContent = "";
    } catch (error) {
      $("rank-status").textContent = error.status === 401 ? "your session ended; log in again" : error.message;
    } finally {
      ranking.loading = false;
    }
    renderRank(keyAt);
  }
  function renderRank(keyAt) {
    const cards = $("rank-cards");
    clear(cards);
    const set = ranking.set;
    $("rank-label").textContent = set ? set.label : "";
    if (set) {
      set.records.forEach((record, index) => {
        const place = ranking.order.indexOf(index);
        const li = el("li", null, place >= 0 ? "rank-card placed" : "rank-card");
        const head = el("div", null, "rank-head");
        head.appendChild(el("kbd", String(index + 1)));
        head.appendChild(el("span", place >= 0 ? "#" + (place + 1) : "", "rank-place"));
        head.appendChild(el("span", record.strategy));
        head.appendChild(el("code", record.id.slice(0, 12)));
        li.appendChild(head);
        li.appendChild(el("p", record.text, "candidate"));
        li.dataset.recordId = record.id;
        cards.appendChild(li);
      });
    }
    $("rank-order").textContent = ranking.order.length
      ? "best first: " + ranking.order.map((index) => index + 1).join(" › ") : "";
    markPaint($("rank"), keyAt, () => { document.body.dataset.rankShown = set ? set.records.map((r) => r.id).join(",") : "none"; });
  }
  function saveRanking(keyAt) {
    const set = ranking.set;
    const k = set.records.length;
    if (ranking.order.length < k - 1) {
      $("rank-status").textContent = "press the numbers of at least " + (k - 1) + " candidates, best first";
      return;
    }
    const order = ranking.order.slice();
    for (let index = 0; index < k; index++) if (!order.includes(index)) order.push(index);
    const recordIds = order.map((index) => set.records[index].id);
    for (const id of recordIds) ranking.sent.add(id);
    state.outbox.push({ path: "/api/rank", queue_id: null, body: { client_id: uid(), record_ids: recordIds } });
    saveOutbox();
    kick();
    $("rank-last").textContent = "ranked " + k + " candidates of " + set.label + ": " +
      order.map((index) => index + 1).join(" › ");
    loadRankSet(keyAt);
  }
  function rankKey(event, keyAt) {
    const set = ranking.set;
    if (event.key === "Escape") { $("rank").hidden = true; return true; }
    if (event.key === "n") { loadRankSet(keyAt); return true; }
    if (!set) return false;
    if (/^[1-9]$/.test(event.key)) {
      const index = Number(event.key) - 1;
      if (index < set.records.length && !ranking.order.includes(index)) {
        ranking.order.push(index);
        renderRank(keyAt);
      }
      return true;
    }
    if (event.key === "Backspace") { ranking.order.pop(); renderRank(keyAt); return true; }
    if (event.key === "Enter") { saveRanking(keyAt); return true; }
    return false;
  }

  // ---- counts, tools -------------------------------------------------------------------
  async function refreshCounts() {
    try {
      const stats = await api("GET", "/api/stats");
      const q = stats.queue;
      let text = "round " + (stats.round ?? "–") + " · open " + q.open + " · decided " + q.done + " · mine " + q.mine;
      if (stats.signals) {
        const s = stats.signals;
        text += " · signals: SFT " + s.sft + " · KTO " + s.kto + " · DPO " + s.dpo + " · reward " + s.reward;
      }
      $("counts").textContent = text;
      $("signal-counts").textContent = text;
    } catch (error) { /* counts are informative only */ }
  }

  async function openTools() {
    $("help").hidden = true;
    $("tools").hidden = false;
    $("users-panel").hidden = state.me.role !== "admin";
    refreshCounts();
    try {
      const data = await api("GET", "/api/agreement");
      const body = $("agreement");
      clear(body);
      for (const row of data.pairs) {
        const tr = el("tr");
        tr.appendChild(el("td", row.a + " · " + row.b));
        tr.appendChild(el("td", row.items));
        tr.appendChild(el("td", row.observed.toFixed(3)));
        tr.appendChild(el("td", row.kappa === null ? "n/a (one category only)" : row.kappa.toFixed(3)));
        body.appendChild(tr);
      }
      if (!data.pairs.length) {
        const tr = el("tr");
        tr.appendChild(el("td", "no items decided by two reviewers yet (set [serve] overlap = 2)"));
        body.appendChild(tr);
      }
    } catch (error) { notice(error.message); }
    if (state.me.role === "admin") loadUsers();
    $("bulk-pattern").focus();
  }

  let bulkPreview = null;
  function bulkSpec() {
    return {
      mode: $("bulk-mode").value, pattern: $("bulk-pattern").value, record_id: $("bulk-record").value.trim(),
      threshold: Number($("bulk-threshold").value), action: $("bulk-action").value,
      replacement: $("bulk-replacement").value, label: $("bulk-label").value.trim(),
    };
  }
  async function previewBulk(event) {
    event.preventDefault();
    const spec = bulkSpec();
    const body = $("bulk-rows");
    clear(body);
    $("bulk-apply").disabled = true;
    try {
      const data = await api("POST", "/api/bulk/preview", spec);
      bulkPreview = { spec, ids: data.record_ids };
      $("bulk-count").textContent = String(data.matches);
      $("bulk-apply").disabled = data.matches === 0;
      $("bulk-status").textContent = data.matches + " open candidate(s) would be " + (spec.action === "edit" ? "edited" : "rejected") +
        (data.matches > data.items.length ? "; the first " + data.items.length + " are shown" : "");
      for (const row of data.items) {
        const tr = el("tr");
        tr.appendChild(el("td", row.record_id.slice(0, 12)));
        tr.appendChild(el("td", "[" + row.label + "] " + row.text));
        const after = el("td", null, "diff");
        if (row.new_text !== null) {
          renderDiff(after, row.text, row.new_text);
          if (row.new_label !== row.label) after.appendChild(el("span", "  [" + row.new_label + "]"));
        } else after.textContent = "rejected";
        tr.appendChild(after);
        body.appendChild(tr);
      }
    } catch (error) { $("bulk-status").textContent = error.message; }
  }
  async function applyBulk() {
    if (!bulkPreview) return;
    $("bulk-apply").disabled = true;
    try {
      const result = await api("POST", "/api/bulk/apply",
        Object.assign({ client_id: uid(), record_ids: bulkPreview.ids }, bulkPreview.spec));
      $("bulk-status").textContent = "applied to " + result.applied + "; " + result.skipped + " no longer open or matching";
      clear($("bulk-rows"));
      bulkPreview = null;
      // Drop buffered items that the repair decided.
      const decided = new Set(result.decisions.map((d) => d.record_id));
      state.buffer = state.buffer.filter((item) => !(item.kind === "single" && decided.has(item.records[0].id)));
      if (state.current && state.current.kind === "single" && decided.has(state.current.records[0].id)) advance(0);
      refreshCounts();
      kick();
    } catch (error) { $("bulk-status").textContent = error.message; }
  }
  async function loadUsers() {
    try {
      const data = await api("GET", "/api/users");
      const body = $("users");
      clear(body);
      for (const user of data.users) {
        const tr = el("tr");
        tr.appendChild(el("td", user.name));
        tr.appendChild(el("td", user.role));
        tr.appendChild(el("td", user.active ? "yes" : "no"));
        body.appendChild(tr);
      }
    } catch (error) { $("user-status").textContent = error.message; }
  }
  async function addUser(event) {
    event.preventDefault();
    try {
      await api("POST", "/api/users", { name: $("user-name").value.trim(), role: $("user-role").value, password: $("user-password").value });
      $("user-status").textContent = "saved " + $("user-name").value.trim();
      $("user-password").value = "";
      loadUsers();
    } catch (error) { $("user-status").textContent = error.message; }
  }

  // ---- login ---------------------------------------------------------------------------
  function showLogin(message) {
    $("login").hidden = false;
    $("review").hidden = true;
    $("logout").hidden = true;
    $("login-error").textContent = message || "";
    $("login-name").focus();
  }
  async function refreshMe() {
    try { state.me = await api("GET", "/api/me"); } catch (error) { /* handled by the caller's next request */ }
  }
  async function start() {
    $("login").hidden = true;
    $("review").hidden = false;
    $("logout").hidden = false;
    $("who").textContent = state.me.name + " (" + state.me.role + ")";
    $("tools-key").hidden = state.me.role === "reviewer";
    loadOutbox();
    if (state.outbox.length) setNet(state.outbox.length + " decision(s) from before, sending");
    refreshCounts();
    setInterval(refreshCounts, 15000);
    kick();
  }
  async function login(event) {
    event.preventDefault();
    try {
      state.me = await api("POST", "/api/login", { name: $("login-name").value.trim(), password: $("login-password").value });
      $("login-password").value = "";
      start();
    } catch (error) {
      $("login-error").textContent = error.message;
    }
  }
  async function logout() {
    try {
      const ids = state.buffer.map((item) => item.queue_id).concat(state.current ? [state.current.queue_id] : []);
      if (!state.outbox.length) await api("POST", "/api/release", { queue_ids: ids });
      await api("POST", "/api/logout", {});
    } catch (error) { /* the session ends anyway */ }
    location.reload();
  }

  document.addEventListener("keydown", onKey);
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", logout);
  $("bulk-form").addEventListener("submit", previewBulk);
  $("bulk-apply").addEventListener("click", applyBulk);
  $("user-form").addEventListener("submit", addUser);
  $("edit-text").addEventListener("input", () => {
    if (state.current) renderDiff($("edit-diff"), state.current.records[0].text, $("edit-text").value);
  });
  window.addEventListener("online", () => kick());

  (async () => {
    try {
      state.me = await api("GET", "/api/me");
      start();
    } catch (error) {
      showLogin("");
    }
  })();
})();
