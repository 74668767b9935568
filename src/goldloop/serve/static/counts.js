// The header's counts (round, open, decided, mine, signals), from /api/stats. They follow the
// decisions the server confirms, shortly after (a burst of key presses shares one request, and
// /api/stats counts the whole queue, so a reviewer asks at most once per MIN_GAP_MS; these
// refreshes skip the signal counts, which re-derive every signal), and a periodic refresh with
// the signals shows what other reviewers do.
import { api } from "./api.js";
import { $ } from "./dom.js";

const SETTLE_MS = 400;         // confirmations this close together share one request
const MIN_GAP_MS = 3000;       // between requests that follow confirmations
let timer = null;
let lastAsked = -Infinity;
let running = false;
let again = null;              // the refresh asked for while one was running (true: with signals)
let signalText = "";           // the last signal counts, shown until the next full refresh

/** Fetch the counts now and show them; one request at a time, the latest answer wins. */
export async function refreshCounts(withSignals = true) {
  if (running) { again = again || withSignals; return; }
  running = true;
  try {
    const stats = await api("GET", withSignals ? "/api/stats" : "/api/stats?signals=false");
    const q = stats.queue;
    if (stats.signals) {
      const s = stats.signals;
      signalText = " · signals: SFT " + s.sft + " · KTO " + s.kto + " · DPO " + s.dpo + " · reward " + s.reward;
    }
    const text = "round " + (stats.round ?? "–") + " · open " + q.open + " · decided " + q.done + " · mine " + q.mine
      + signalText;
    $("counts").textContent = text;
    $("signal-counts").textContent = text;
  } catch (error) {
    /* counts are informative only */
  } finally {
    running = false;
  }
  if (again !== null) { const next = again; again = null; refreshCounts(next); }
}

/** Refresh the counts shortly: after the server confirmed a decision, an undo or a ranking. */
export function countsSoon() {
  if (timer !== null) return;             // the request already due covers this confirmation too
  const wait = Math.max(SETTLE_MS, lastAsked + MIN_GAP_MS - performance.now());
  timer = setTimeout(() => {
    timer = null;
    lastAsked = performance.now();
    refreshCounts(false);
  }, wait);
}
