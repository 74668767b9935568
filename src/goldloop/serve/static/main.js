// goldloop review page: keyboard-first triage. Items are prefetched, so a key press never waits
// for the network; every decision goes into an outbox (kept in localStorage) that is sent in
// order and retried until the server confirms it, each with an id made here so a retry is never
// stored twice. Record text is untrusted: it is only ever set as text, never as markup.
//
// This module wires the others: the key dispatcher (which screen a key press goes to) and the
// network loop's hooks.
import { $ } from "./dom.js";
import { countsSoon } from "./counts.js";
import { connect, kick } from "./feed.js";
import { openRank, rankKey } from "./ranking.js";
import { editorInput, editorKey, render, triageKey } from "./review.js";
import { resume, showLogin } from "./session.js";
import { state } from "./state.js";
import { bindTools, openTools } from "./tools.js";

function onKey(event) {
  const keyAt = event.timeStamp;
  if (state.editing) {
    if (editorKey(event, keyAt)) event.preventDefault();
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
  if (event.key === "r") { openRank(keyAt); event.preventDefault(); return; }
  if (triageKey(event, keyAt)) event.preventDefault();
}

connect({ show: () => render(0), loggedOut: showLogin, saved: countsSoon });
document.addEventListener("keydown", onKey);
$("edit-text").addEventListener("input", editorInput);
bindTools();
window.addEventListener("online", () => kick());
resume();
