// Decisions waiting for the server's confirmation, sent in order and retried until it answers.
//
// Each entry carries a client id made here; the server stores the answer under it, so an entry
// sent twice (an answer lost on the way back, a reload before the answer came) is stored once.
// Entries are kept in a storage object (the page passes localStorage) under one key per
// reviewer, so a reload or a crash loses nothing. No DOM here: Node's test runner imports it.

export const KEY_PREFIX = "goldloop.outbox.";
// 4xx answers worth retrying: a stale CSRF token (403, fixed by reloading the session), timeouts
// and rate limits. Any other 4xx is a refusal for good (e.g. someone else decided the item).
const RETRIED = [403, 408, 425, 429];

/** A fresh client id: 32 hex digits from ``random`` (the Web Crypto API). */
export function newClientId(random = globalThis.crypto) {
  const bytes = new Uint8Array(16);
  random.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** What to do after a failed send: "stop" (logged out), "drop" (refused for good) or "retry". */
export function fate(error) {
  const status = error && error.status;
  if (status === 401) return "stop";
  if (status >= 400 && status < 500 && !RETRIED.includes(status)) return "drop";
  return "retry";                     // network errors (no status), 5xx, and RETRIED
}

/** Milliseconds to wait before the next try after ``failures`` failures in a row (at most 8 s). */
export function backoff(failures) { return Math.min(250 * 2 ** failures, 8000); }

export class Outbox {
  /** ``storage``: getItem/setItem (localStorage), or null to keep entries in memory only. */
  constructor({ storage = null } = {}) {
    this.storage = storage;
    this.key = KEY_PREFIX;
    this.ops = [];                    // {path, queue_id, body: {client_id, ...}}, oldest first
    this.failures = 0;                // failed sends in a row
  }

  get length() { return this.ops.length; }

  /** Switch to ``reviewer``'s entries, as stored by an earlier page (or none). */
  open(reviewer) {
    this.key = KEY_PREFIX + (reviewer || "");
    let stored = [];
    try { stored = JSON.parse((this.storage && this.storage.getItem(this.key)) || "[]"); } catch (e) { stored = []; }
    const seen = new Set();
    this.ops = [];
    for (const op of Array.isArray(stored) ? stored : []) {
      if (!op || !op.path || !op.body || !op.body.client_id || seen.has(op.body.client_id)) continue;
      seen.add(op.body.client_id);
      this.ops.push({ path: op.path, queue_id: op.queue_id ?? null, body: op.body });
    }
  }

  /** Queue a POST of ``body`` (which carries its client_id) to ``path``; an id queued already is not queued twice. */
  add(path, body, queueId = null) {
    if (!body || !body.client_id) throw new Error("an outbox entry needs body.client_id (see newClientId)");
    const known = this.ops.find((op) => op.body.client_id === body.client_id);
    if (known) return known;
    const op = { path, queue_id: queueId ?? null, body };
    this.ops.push(op);
    this.save();
    return op;
  }

  /** Queue ids named by waiting entries: the server keeps those items leased to this reviewer. */
  queueIds() { return this.ops.filter((op) => op.queue_id).map((op) => op.queue_id); }

  save() {
    try { if (this.storage) this.storage.setItem(this.key, JSON.stringify(this.ops)); } catch (e) { /* private mode, quota */ }
  }

  /** Take ``op`` out (matched by client id: open() may have reloaded the entries meanwhile). */
  remove(op) {
    const at = this.ops.findIndex((o) => o.body.client_id === op.body.client_id);
    if (at >= 0) this.ops.splice(at, 1);
    this.save();
  }

  /**
   * Send the entries in order until none is left; true when emptied, false when stopped (401).
   *
   * ``send(op)`` resolves to the server's answer or rejects with an Error carrying ``status``.
   * An entry leaves only when confirmed or refused for good; a failure is retried (after
   * ``backoff``) before any later entry is sent. Hooks, all optional: ``before()`` runs before
   * each send, ``confirmed(op, answer)``, ``refused(op, error)``, ``stopped(error)``,
   * ``retrying(error, op)``; ``sleep(ms)`` waits (tests pass one that does not).
   */
  async drain({ send, before, confirmed, refused, stopped, retrying, sleep = wait }) {
    while (this.ops.length) {
      if (before) await before();
      const op = this.ops[0];
      try {
        const answer = await send(op);
        this.remove(op);
        this.failures = 0;
        if (confirmed) confirmed(op, answer);
      } catch (error) {
        const next = fate(error);
        if (next === "stop") { if (stopped) stopped(error); return false; }
        if (next === "drop") { this.remove(op); if (refused) refused(op, error); continue; }
        this.failures += 1;
        if (retrying) await retrying(error, op);
        await sleep(backoff(this.failures));
      }
    }
    return true;
  }
}

const wait = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
