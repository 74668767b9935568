// Logging in and out. A session's start opens the reviewer's outbox (what an earlier page left
// unsent goes first), shows the counts and starts the network loop.
import { api, setCsrfToken } from "./api.js";
import { refreshCounts } from "./counts.js";
import { $, setNet } from "./dom.js";
import { kick } from "./feed.js";
import { state } from "./state.js";

const COUNTS_EVERY_MS = 15000;    // what other reviewers decided shows within this
let countsTimer = null;

/** Show the login form, with ``message`` saying why. */
export function showLogin(message) {
  $("login").hidden = false;
  $("review").hidden = true;
  $("logout").hidden = true;
  $("login-error").textContent = message || "";
  $("login-name").focus();
}

function start(me) {
  state.me = me;
  setCsrfToken(me.csrf_token);
  $("login").hidden = true;
  $("review").hidden = false;
  $("logout").hidden = false;
  $("who").textContent = me.name + " (" + me.role + ")";
  $("tools-key").hidden = me.role === "reviewer";
  state.outbox.open(me.name);
  if (state.outbox.length) setNet(state.outbox.length + " decision(s) from before, sending");
  refreshCounts();
  if (countsTimer === null) countsTimer = setInterval(refreshCounts, COUNTS_EVERY_MS);
  kick();
}

async function login(event) {
  event.preventDefault();
  try {
    const me = await api("POST", "/api/login", { name: $("login-name").value.trim(), password: $("login-password").value });
    $("login-password").value = "";
    start(me);
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

/** Wire the login form and the logout button, then resume the session the cookie names, if any. */
export async function resume() {
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", logout);
  let me;
  try {
    me = await api("GET", "/api/me");
  } catch (error) {
    showLogin("");
    return;
  }
  start(me);
}
