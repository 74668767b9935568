// Small DOM helpers shared by the page's screens. Record text is untrusted: it only ever goes
// into the page through textContent or text nodes, which is what el() does.

export const $ = (id) => document.getElementById(id);

export function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

/** A table row with one cell per item: a string or number (set as text) or a cell node made already. */
export function row(cells, cls) {
  const tr = el("tr", null, cls);
  for (const cell of cells) tr.appendChild(cell instanceof Node ? cell : el("td", cell));
  return tr;
}

export function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

export function notice(text) { $("notice").textContent = text || ""; }

export function setNet(text, bad) { $("net").textContent = text; $("net").classList.toggle("bad", !!bad); }

// Mark the paint: the frame callback runs just before the browser paints; the message posted
// from it runs right after that paint. The browser tests wait on body's data-paints, and the
// latency figures read data-key-at and data-painted-at.
export function markPaint(node, keyAt, also) {
  requestAnimationFrame(() => {
    const channel = new MessageChannel();
    channel.port1.onmessage = () => {
      node.dataset.keyAt = String(keyAt || 0);
      node.dataset.paintedAt = String(performance.now());
      if (also) also();
      document.body.dataset.paints = String(Number(document.body.dataset.paints || 0) + 1);
    };
    channel.port2.postMessage(null);
  });
}
