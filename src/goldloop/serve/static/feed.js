// The page's one network loop: sends the outbox in order and keeps the prefetch buffer topped
// up, so a key press never waits for the network. What it needs from the screens (showing an
// item, the login form, fresh counts) is passed in by main through connect().
import { api, setCsrfToken } from "./api.js";
import { setNet, notice } from "./dom.js";
import { state } from "./state.js";

const hooks = { show: () => {}, loggedOut: () => {}, saved: () => {} };
let busy = false;
let refillTimer = null;

/** ``show()`` repaints the current item; ``loggedOut(message)`` asks for a login; ``saved(op, answer)`` follows each confirmation. */
export function connect(given) { Object.assign(hooks, given); }

/** Fetch /api/me again (a 403 may mean the CSRF token changed); keeps the old one on failure. */
async function refreshMe() {
  try {
    state.me = await api("GET", "/api/me");
    setCsrfToken(state.me.csrf_token);
  } catch (error) { /* handled by the caller's next request */ }
}

function held() { return (state.current ? 1 : 0) + state.buffer.length; }

function runningLow() { return !state.exhausted && held() <= Math.ceil(state.me.prefetch / 2); }

// An undo of a decision made before this page was opened: show the item it gave back.
function settle(op, answer) {
  if (op.path === "/api/undo" && answer && answer.item && !state.history.length) {
    if (state.current) state.buffer.unshift(state.current);
    state.current = answer.item;
    hooks.show();
  }
}

/** Send what waits in the outbox, topping up the buffer whenever it runs low (before the next
 * entry, so fast key presses never drain it); then top it up once more. */
export async function kick() {
  if (busy) return;
  busy = true;
  const outbox = state.outbox;
  try {
    const emptied = await outbox.drain({
      send: (op) => api("POST", op.path, op.body),
      before: async () => { if (runningLow()) await refill(); },
      confirmed: (op, answer) => { settle(op, answer); hooks.saved(op, answer); },
      refused: (op, error) => notice("not saved: " + error.message),
      stopped: () => {
        hooks.loggedOut("your session ended; log in again to send " + outbox.length + " waiting decision(s)");
      },
      retrying: async (error) => {
        if (error.status === 403) await refreshMe();
        setNet("not saved yet: " + outbox.length + " waiting, retrying", true);
      },
    });
    if (!emptied) return;
    setNet(outbox.failures ? "" : "all saved");
    await refill();
  } finally {
    busy = false;
  }
  if (outbox.length) kick();
}

async function refill() {
  if (held() >= state.me.prefetch && !state.exhausted) return;
  if (state.exhausted && held()) return;
  const have = [];
  if (state.current) have.push(state.current.queue_id);
  for (const item of state.buffer) have.push(item.queue_id);
  const pending = state.outbox.queueIds();
  have.push(...pending);
  let data;
  try {
    // Items whose decision is still in the outbox are leased until it lands: ask beyond them.
    data = await api("POST", "/api/next", { want: Math.min(100, state.me.prefetch + pending.length), have });
  } catch (error) {
    if (error.status === 401) { hooks.loggedOut("your session ended; log in again"); return; }
    setNet("cannot reach the server: " + error.message, true);
    scheduleRefill(3000);
    return;
  }
  const known = new Set(have);
  for (const item of data.items) if (!known.has(item.queue_id)) state.buffer.push(item);
  state.exhausted = data.items.length === 0;
  if (!state.current && state.buffer.length) { state.current = state.buffer.shift(); hooks.show(); }
  else if (!state.current) hooks.show();
  if (state.exhausted) scheduleRefill(10000);
}

function scheduleRefill(ms) {
  clearTimeout(refillTimer);
  refillTimer = setTimeout(() => { state.exhausted = false; kick(); }, ms);
}
