// The review page's word diff: insertions, deletions and replacements come out as runs that
// rebuild both texts, and rendering puts record text into the page as text, never as markup.
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { MAX_CELLS, diffWords, renderDiff } from "../../src/goldloop/serve/static/diff.js";

const joined = (runs, kinds) => runs.filter(([kind]) => kinds.includes(kind)).map(([, text]) => text).join("");

/** The little of the DOM renderDiff may use; any way of parsing markup throws. */
class FakeDocument {
  constructor() { this.created = []; }
  createTextNode(data) { const node = new FakeText(this, data); this.created.push(node); return node; }
  createElement(tag) { const node = new FakeElement(this, tag); this.created.push(node); return node; }
}
class FakeText {
  constructor(doc, data) { this.ownerDocument = doc; this.nodeType = 3; this.data = String(data); }
  get textContent() { return this.data; }
}
class FakeElement {
  constructor(doc, tag) { this.ownerDocument = doc; this.nodeType = 1; this.tagName = tag.toUpperCase(); this.childNodes = []; }
  get firstChild() { return this.childNodes[0] || null; }
  appendChild(child) { this.childNodes.push(child); return child; }
  removeChild(child) { this.childNodes.splice(this.childNodes.indexOf(child), 1); return child; }
  get textContent() { return this.childNodes.map((child) => child.textContent).join(""); }
  set textContent(text) { this.childNodes = [new FakeText(this.ownerDocument, text)]; }
  set innerHTML(html) { throw new Error("innerHTML set with " + JSON.stringify(html)); }
  set outerHTML(html) { throw new Error("outerHTML set with " + JSON.stringify(html)); }
  insertAdjacentHTML() { throw new Error("insertAdjacentHTML called"); }
}
const shape = (node) => node.childNodes.map((c) => (c.nodeType === 3 ? ["#text", c.data] : [c.tagName, c.textContent]));

describe("diffWords", () => {
  it("finds an inserted word", () => {
    assert.deepEqual(diffWords("pay the bill", "pay the whole bill"),
      [["same", "pay the "], ["ins", "whole "], ["same", "bill"]]);
  });

  it("finds a deleted word", () => {
    assert.deepEqual(diffWords("refund my double charge", "refund my charge"),
      [["same", "refund my "], ["del", "double "], ["same", "charge"]]);
  });

  it("finds a replaced word, the old one first", () => {
    assert.deepEqual(diffWords("the printer is broken", "the router is broken"),
      [["same", "the "], ["del", "printer"], ["ins", "router"], ["same", " is broken"]]);
  });

  it("shows identical texts as one unchanged run, and empty texts as nothing at all", () => {
    assert.deepEqual(diffWords("no change here", "no change here"), [["same", "no change here"]]);
    assert.deepEqual(diffWords("", ""), []);
    assert.deepEqual(diffWords("", "all new"), [["ins", "all new"]]);
    assert.deepEqual(diffWords("all gone", ""), [["del", "all gone"]]);
  });

  it("keeps line breaks and runs of spaces as they were typed", () => {
    const runs = diffWords("line one\n\nline  two", "line one\nline  2");
    assert.equal(joined(runs, ["same", "del"]), "line one\n\nline  two");
    assert.equal(joined(runs, ["same", "ins"]), "line one\nline  2");
  });

  it("rebuilds both texts from its runs, with no empty or repeated runs, for any edit", () => {
    let seed = 7;
    const random = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
    const words = ["a", "b", "cc", "<b>", "&amp;", "ü", "  ", "\n", "x y"];
    const text = () => Array.from({ length: Math.floor(random() * 12) }, () => words[Math.floor(random() * words.length)])
      .join(random() < 0.5 ? " " : "\t");
    for (let round = 0; round < 500; round++) {
      const before = text(), after = text();
      const runs = diffWords(before, after);
      assert.equal(joined(runs, ["same", "del"]), before);
      assert.equal(joined(runs, ["same", "ins"]), after);
      runs.forEach(([kind, value], i) => {
        assert.ok(value.length > 0, "an empty run");
        if (i) assert.notEqual(kind, runs[i - 1][0], "two runs of one kind in a row");
      });
    }
  });

  it("replaces a text too long to diff word by word as a whole", () => {
    const before = "w ".repeat(2100), after = "v ".repeat(2100);
    assert.ok((2 * 2100 + 1) ** 2 > MAX_CELLS);
    assert.deepEqual(diffWords(before, after), [["del", before], ["ins", after]]);
  });
});

describe("renderDiff", () => {
  it("renders unchanged text as text nodes and changes as <del> and <ins>, replacing what was there", () => {
    const doc = new FakeDocument();
    const node = new FakeElement(doc, "p");
    node.appendChild(doc.createTextNode("old diff"));
    renderDiff(node, "the printer is broken", "the router is broken");
    assert.deepEqual(shape(node),
      [["#text", "the "], ["DEL", "printer"], ["INS", "router"], ["#text", " is broken"]]);
  });

  it("sets record text that looks like markup as text, never as HTML", () => {
    const doc = new FakeDocument();
    const node = new FakeElement(doc, "span");
    const before = '<img src=x onerror="window.__xss = 1"> refund please';
    const after = '<script>window.__xss = 2</script> refund <b onmouseover="x()">now</b> please';
    renderDiff(node, before, after);
    const made = doc.created.filter((n) => n.nodeType === 1).map((n) => n.tagName);
    assert.ok(made.every((tag) => tag === "DEL" || tag === "INS"), made.join());
    const text = (kinds) => node.childNodes.filter((c) => kinds.includes(c.nodeType === 3 ? "#text" : c.tagName))
      .map((c) => c.textContent).join("");
    assert.equal(text(["#text", "DEL"]), before);
    assert.equal(text(["#text", "INS"]), after);
    for (const child of node.childNodes) {
      if (child.nodeType === 1) assert.deepEqual(child.childNodes.map((c) => c.nodeType), [3]);
    }
  });
});
