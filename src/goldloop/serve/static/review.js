// The review screen: one candidate (accept, reject, edit, skip) or an A-vs-B pair (prefer), its
// gold seeds and filter verdicts, and undo. Every decision goes into the outbox and the next
// prefetched item shows at once; the network loop (feed.js) sends it.
import { hideCitations, showCitations } from "./cite.js";
import { renderDiff } from "./diff.js";
import { $, clear, el, markPaint, notice, row } from "./dom.js";
import { kick } from "./feed.js";
import { newClientId } from "./outbox.js";
import { state } from "./state.js";

const HISTORY = 200;          // decisions of this page that undo can step back through
const WORDS = { accept: "accepted", reject: "rejected", skip: "skipped", edit: "edited", prefer: "preferred" };

function seedsList(records) {
  const list = $("seeds");
  clear(list);
  const seen = new Set();
  for (const record of records) {
    for (const seed of record.seeds) {
      if (seen.has(seed.id)) continue;
      seen.add(seed.id);
      const li = el("li", seed.response ? seed.text + "\n→ " + seed.response : seed.text);
      if (!seed.response) li.prepend(el("b", "[" + seed.label + "] "));
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
      body.appendChild(row([records.length > 1 ? "AB"[index] : "", v.filter,
                            v.keep ? (v.flag ? "kept, " + v.flag : "kept") : "dropped",
                            v.score === null || v.score === undefined ? "" : Number(v.score).toFixed(3), v.reason],
                           v.keep ? (v.flag ? "flagged" : "") : "dropped"));
    }
  });
}

/** Show ``state.current`` (or the empty notice); ``keyAt`` is the key press it answers, for the paint mark. */
export function render(keyAt) {
  const item = state.current;
  $("item").hidden = !item;
  $("empty").hidden = !!item;
  closeEditor();
  hideCitations();
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
      // A prompt -> response pair (the generate task): both sides shown, no label.
      for (const id of ["prompt-head", "response-head", "response"]) $(id).hidden = !r.pair;
      $("label").parentElement.hidden = !!r.pair;
      $("response").textContent = r.pair ? r.response : "";
      $("text").textContent = r.text;
      $("label").textContent = r.label;
      $("strategy").textContent = r.strategy;
      $("record-id").textContent = r.id;
      $("doubt").hidden = !r.doubt;
      $("doubt").textContent = r.doubt ? "label-doubt: " + r.doubt : "";
      // A real pool record: the label is the model's suggestion; accept confirms it, edit corrects it.
      // A stress-test suite case: the label is the expected one; it is scored on, never trained on.
      $("suggestion").hidden = !r.suggestion && !r.suite;
      $("suggestion").textContent = r.suite ? r.suite.note
        : r.suggestion ? [r.suggestion.summary, r.suggestion.why].filter(Boolean).join(" · ") : "";
      $("label-kind").textContent = r.suite ? "suite " + r.suite.name + " · expected label"
        : r.suggestion ? "suggested label" : "label";
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

/** Show the next prefetched item (or none). */
export function advance(keyAt) {
  state.current = state.buffer.length ? state.buffer.shift() : null;
  render(keyAt);
}

/** Drop the shown and buffered single items whose record is in ``recordIds`` (decided elsewhere, e.g. by a bulk repair). */
export function dropDecided(recordIds) {
  const decided = new Set(recordIds);
  const gone = (item) => item.kind === "single" && decided.has(item.records[0].id);
  state.buffer = state.buffer.filter((item) => !gone(item));
  if (state.current && gone(state.current)) advance(0);
}

function showLast(entry) {
  const node = $("last");
  clear(node);
  const record = entry.item.records[0];
  let head = WORDS[entry.action] || entry.action;
  if (entry.action === "prefer") head += " " + entry.extra.winner.toUpperCase();
  node.appendChild(el("b", head + ": "));
  if (entry.action === "edit") {
    const diff = el("span", null, "diff");
    if (record.pair) renderDiff(diff, record.response, entry.extra.response);
    else renderDiff(diff, record.text, entry.extra.text);
    node.appendChild(diff);
    if (entry.extra.label && entry.extra.label !== record.label) {
      node.appendChild(el("span", "  (label " + record.label + " → " + entry.extra.label + ")"));
    }
  } else {
    node.appendChild(el("span", record.text.length > 160 ? record.text.slice(0, 160) + "…" : record.text));
  }
  node.appendChild(el("span", "   (u undoes)"));
}

function decide(action, extra, keyAt) {
  const item = state.current;
  if (!item) return;
  const body = Object.assign({ client_id: newClientId(), queue_id: item.queue_id, action }, extra || {});
  state.outbox.add("/api/decide", body, item.queue_id);
  const entry = { item, action, extra: extra || {} };
  state.history.push(entry);
  if (state.history.length > HISTORY) state.history.shift();
  showLast(entry);
  notice("");
  advance(keyAt);
  kick();
}

function undo(keyAt) {
  const last = state.history.pop();
  state.outbox.add("/api/undo", { client_id: newClientId() }, last ? last.item.queue_id : null);
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
  $("edit-text").readOnly = !!record.suite;   // a suite case's text is what it tests: only its label is corrected
  if (record.pair) {
    // A pair's edit rewrites its response; the prompt stays in view above the editor.
    $("response").hidden = true;
    $("edit-label-box").hidden = true;
    $("edit-text").value = record.response;
    renderDiff($("edit-diff"), record.response, record.response);
    $("edit-text").focus();
    return;
  }
  $("edit-label-box").hidden = false;
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
  (record.suite ? select : $("edit-text")).focus();
}

function closeEditor() {
  state.editing = false;
  $("editor").hidden = true;
  $("text").hidden = false;
  const record = state.current && state.current.kind === "single" ? state.current.records[0] : null;
  $("response").hidden = !(record && record.pair);
}

function saveEdit(keyAt) {
  const record = state.current.records[0];
  if (record.pair) {
    const response = $("edit-text").value.replace(/\s+$/, "");
    if (!response.trim()) { notice("an edited pair needs a response; press Esc and reject the item instead"); return; }
    if (response === record.response) { notice("nothing changed; press Esc, then accept"); return; }
    $("edit-text").blur();
    decide("edit", { response }, keyAt);
    return;
  }
  const text = $("edit-text").value.trim();
  const label = $("edit-label").value;
  if (!text) { notice("an edit needs text; press Esc and reject the item instead"); return; }
  if (text === record.text && label === record.label) { notice("nothing changed; press Esc, then accept"); return; }
  $("edit-text").blur();
  decide("edit", { text, label }, keyAt);
}

/** Redraw the editor's diff as the corrected text is typed. */
export function editorInput() {
  if (state.current) {
    const record = state.current.records[0];
    renderDiff($("edit-diff"), record.pair ? record.response : record.text, $("edit-text").value);
  }
}

/** Keys while the editor is open: Ctrl+Enter saves, Esc cancels. True if ``event`` was used. */
export function editorKey(event, keyAt) {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) { saveEdit(keyAt); return true; }
  if (event.key === "Escape") { closeEditor(); return true; }
  return false;
}

/** The triage keys (accept, reject, edit, prefer, skip, undo). True if ``event`` was used. */
export function triageKey(event, keyAt) {
  const item = state.current;
  const pair = item && item.kind === "pair";
  const onlyPrefer = () => notice("a pairwise item: press 1 for A or 2 for B");
  switch (event.key) {
    case "ArrowRight": case "a":
      if (pair) onlyPrefer(); else decide("accept", null, keyAt);
      return true;
    case "ArrowLeft": case "x":
      if (pair) onlyPrefer(); else decide("reject", null, keyAt);
      return true;
    case "e":
      if (pair) notice("pairwise items are not edited; press 1 or 2"); else openEditor();
      return true;
    case "1": case "2":
      if (pair) decide("prefer", { winner: event.key === "1" ? "a" : "b" }, keyAt);
      return true;
    case "s": decide("skip", null, keyAt); return true;
    case "u": undo(keyAt); return true;
    case "c": showCitations(); return true;
    default: return false;
  }
}
