// Word diff for edits: what a correction removed and added, shown as <del> and <ins>.
// No DOM needed to diff (Node's test runner imports this file); rendering creates nodes in the
// target's own document and sets the text as text, so record text never becomes markup.

/** The longest inputs diffed word by word (words before × words after); past it, all-out all-in. */
export const MAX_CELLS = 4e6;

/**
 * Runs of ["same" | "del" | "ins", text] turning ``before`` into ``after``, split on whitespace
 * (kept): the "same" and "del" runs join to ``before``, the "same" and "ins" runs to ``after``.
 *
 *   diffWords("a b c", "a x c") → [["same", "a "], ["del", "b"], ["ins", "x"], ["same", " c"]]
 */
export function diffWords(before, after) {
  const a = before.split(/(\s+)/), b = after.split(/(\s+)/);
  if (a.length * b.length > MAX_CELLS) return [["del", before], ["ins", after]];
  const n = a.length, m = b.length;
  const lcs = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      lcs[i][j] = a[i] === b[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
    }
  }
  const out = [];
  const push = (kind, text) => {
    if (!text) return;
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

/** Replace ``node``'s children with the diff: text nodes for what stayed, <del>/<ins> elements for the rest. */
export function renderDiff(node, before, after) {
  const doc = node.ownerDocument;
  while (node.firstChild) node.removeChild(node.firstChild);
  for (const [kind, text] of diffWords(before, after)) {
    if (kind === "same") {
      node.appendChild(doc.createTextNode(text));
    } else {
      const mark = doc.createElement(kind);
      mark.textContent = text;
      node.appendChild(mark);
    }
  }
}
