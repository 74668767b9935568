// Citations: the human-approved examples nearest to the item on screen (key c), with their source
// and reviewer, so a label can be checked against the labelled data a decision would rest on.
// Their text is untrusted and goes in as text only (el, text nodes).
import { api } from "./api.js";
import { $, clear, el } from "./dom.js";
import { state } from "./state.js";

/** Describe one cited example's origin: who stands behind its label, its source class and source. */
export function citedBy(example) {
  const who = example.reviewer
    ? "label by " + example.reviewer + (example.simulated ? " (SIMULATED reviewer)" : "")
    : "gold";
  const where = example.source + (example.citation ? ", " + example.citation : "");
  return who + " · " + example.source_class + ": " + where;
}

/** Look the shown item's nearest approved examples up and list them (hidden again by hideCitations). */
export async function showCitations() {
  const item = state.current;
  if (!item) return;
  const list = $("cites");
  $("cites-box").hidden = false;
  clear(list);
  list.appendChild(el("li", "looking up…"));
  let data;
  try {
    data = await api("GET", "/api/cite?record=" + encodeURIComponent(item.records[0].id) + "&top=5");
  } catch (error) {
    if (state.current === item) { clear(list); list.appendChild(el("li", "could not cite: " + error.message)); }
    return;
  }
  if (state.current !== item) return;           // the reviewer has moved on
  clear(list);
  for (const example of data.examples) {
    const li = el("li");
    li.appendChild(el("b", "[" + example.label + "] "));
    li.appendChild(document.createTextNode(example.text));
    li.appendChild(el("span", " " + Number(example.similarity).toFixed(2) + " · " + citedBy(example), "hint"));
    list.appendChild(li);
  }
  if (!data.examples.length) list.appendChild(el("li", "(nothing to cite)"));
}

export function hideCitations() {
  $("cites-box").hidden = true;
  clear($("cites"));
}
