// What the screens share: who is logged in, the item shown, the prefetched ones behind it, the
// reviewer's own decisions (for undo) and the outbox. One object, imported where it is used.
import { Outbox } from "./outbox.js";

function localStore() {
  try { return window.localStorage; } catch (e) { return null; }   // blocked storage: memory only
}

export const state = {
  me: null,              // /api/me: name, role, csrf_token, prefetch, labels…
  current: null,         // the item on screen, or null
  buffer: [],            // prefetched items, next first
  history: [],           // this page's decisions, last 200, for undo: {item, action, extra}
  outbox: new Outbox({ storage: localStore() }),
  exhausted: false,      // the last /api/next returned nothing
  editing: false,        // the editor is open
};
