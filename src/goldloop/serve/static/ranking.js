// The ranking screen: a set of candidates of one label; the reviewer presses their numbers best
// first. A saved ranking goes through the outbox like a decision; its records are left out of
// the next sets (the server may not have it yet).
import { api } from "./api.js";
import { $, clear, el, markPaint } from "./dom.js";
import { kick } from "./feed.js";
import { newClientId } from "./outbox.js";
import { state } from "./state.js";

const EXCLUDED = 5000;        // most record ids sent as "ranked already" (the server's limit)
const ranking = { set: null, order: [], sent: new Set(), loading: false };

/** Show the ranking screen with a fresh set. */
export function openRank(keyAt) {
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
    ranking.set = await api("POST", "/api/rank/next", { exclude: Array.from(ranking.sent).slice(-EXCLUDED) });
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
  markPaint($("rank"), keyAt, () => {
    document.body.dataset.rankShown = set ? set.records.map((r) => r.id).join(",") : "none";
  });
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
  state.outbox.add("/api/rank", { client_id: newClientId(), record_ids: recordIds });
  kick();
  $("rank-last").textContent = "ranked " + k + " candidates of " + set.label + ": " +
    order.map((index) => index + 1).join(" › ");
  loadRankSet(keyAt);
}

/** Keys on the ranking screen: numbers, Backspace, Enter, n, Esc. True if ``event`` was used. */
export function rankKey(event, keyAt) {
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
