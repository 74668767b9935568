// The review page's outbox: decisions persist until the server confirms them, go in order, and
// are resent with the same client id, so a lost answer never stores a decision twice.
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { KEY_PREFIX, Outbox, backoff, fate, newClientId } from "../../src/goldloop/serve/static/outbox.js";

/** localStorage's getItem/setItem over a Map; ``failWrites`` makes setItem throw like a full quota. */
class MemoryStorage {
  constructor({ failWrites = false } = {}) { this.items = new Map(); this.failWrites = failWrites; this.writes = 0; }
  getItem(key) { return this.items.has(key) ? this.items.get(key) : null; }
  setItem(key, value) {
    if (this.failWrites) throw new Error("QuotaExceededError");
    this.writes += 1;
    this.items.set(key, String(value));
  }
}

/** A review server that stores each client id's first answer, as the real one does (review_ops). */
class FakeServer {
  constructor() { this.answers = new Map(); this.stored = []; this.requests = []; this.faults = []; }
  /** The next requests fail like this, in order: "lost" (stored, answer dropped), "down", or an HTTP status. */
  fail(...faults) { this.faults.push(...faults); }
  async send(op) {
    this.requests.push(op.body.client_id);
    const fault = this.faults.shift();
    if (fault === "down") throw new TypeError("Failed to fetch");
    if (typeof fault === "number") throw Object.assign(new Error("refused " + fault), { status: fault });
    if (!this.answers.has(op.body.client_id)) {
      this.stored.push(op.body);
      this.answers.set(op.body.client_id, { ok: true, n: this.stored.length });
    }
    if (fault === "lost") throw new TypeError("network error: connection reset");
    return this.answers.get(op.body.client_id);
  }
}

let counter = 0;
const id = () => "client-" + String(++counter).padStart(4, "0");
/** A sleep that does not wait but records how long it was asked to; past 50 waits the test fails. */
const noSleep = (log) => async (ms) => {
  log.push(ms);
  if (log.length > 50) throw new Error("still retrying after 50 waits: " + log.join(", "));
};

function filled(storage, reviewer, n) {
  const outbox = new Outbox({ storage });
  outbox.open(reviewer);
  const ops = [];
  for (let i = 0; i < n; i++) ops.push(outbox.add("/api/decide", { client_id: id(), queue_id: 10 + i, action: "accept" }, 10 + i));
  return { outbox, ops };
}

describe("client ids and failure handling", () => {
  it("makes 32 hex digits from the given random source", () => {
    assert.equal(newClientId({ getRandomValues: (bytes) => bytes.fill(0xab) }), "ab".repeat(16));
    assert.equal(newClientId({ getRandomValues: (bytes) => bytes.fill(0x05) }), "05".repeat(16));
  });

  // Web Crypto is global in browsers and in Node from 19 on.
  it("makes a different id each time from Web Crypto", { skip: !globalThis.crypto && "no global Web Crypto" }, () => {
    const seen = new Set(Array.from({ length: 50 }, () => newClientId()));
    assert.equal(seen.size, 50);
    for (const value of seen) assert.match(value, /^[0-9a-f]{32}$/);
  });

  it("stops on 401, drops other refusals, retries the rest", () => {
    const status = (s) => Object.assign(new Error("x"), { status: s });
    assert.equal(fate(status(401)), "stop");
    for (const s of [400, 404, 409, 413, 422]) assert.equal(fate(status(s)), "drop", String(s));
    for (const s of [403, 408, 425, 429, 500, 502, 503]) assert.equal(fate(status(s)), "retry", String(s));
    assert.equal(fate(new TypeError("Failed to fetch")), "retry");
  });

  it("backs off exponentially up to 8 seconds", () => {
    assert.deepEqual([1, 2, 3, 4, 5, 6, 9].map(backoff), [500, 1000, 2000, 4000, 8000, 8000, 8000]);
  });
});

describe("queueing", () => {
  it("refuses an entry without a client id", () => {
    const outbox = new Outbox();
    assert.throws(() => outbox.add("/api/decide", { queue_id: 1, action: "skip" }), /client_id/);
    assert.equal(outbox.length, 0);
  });

  it("queues a client id once, however often it is added", () => {
    const outbox = new Outbox();
    const body = { client_id: id(), queue_id: 7, action: "reject" };
    const first = outbox.add("/api/decide", body, 7);
    const again = outbox.add("/api/decide", { ...body }, 7);
    assert.equal(again, first);
    assert.equal(outbox.length, 1);
    outbox.add("/api/undo", { client_id: id() });
    assert.equal(outbox.length, 2);
  });

  it("lists the queue ids its entries name, in order, leaving out those naming none", () => {
    const outbox = new Outbox();
    outbox.add("/api/decide", { client_id: id(), queue_id: 3, action: "skip" }, 3);
    outbox.add("/api/rank", { client_id: id(), record_ids: ["r1", "r2"] });
    outbox.add("/api/decide", { client_id: id(), queue_id: 5, action: "accept" }, 5);
    outbox.add("/api/undo", { client_id: id() }, null);
    assert.deepEqual(outbox.queueIds(), [3, 5]);
  });
});

describe("persistence across a reload", () => {
  it("keeps waiting entries, in order, for the next page of the same reviewer", () => {
    const storage = new MemoryStorage();
    const { ops } = filled(storage, "ann", 3);
    const reloaded = new Outbox({ storage });
    reloaded.open("ann");
    assert.deepEqual(reloaded.ops, ops);
    assert.deepEqual(JSON.parse(storage.getItem(KEY_PREFIX + "ann")), ops);
  });

  it("keeps each reviewer's entries apart", () => {
    const storage = new MemoryStorage();
    filled(storage, "ann", 2);
    const bob = new Outbox({ storage });
    bob.open("bob");
    assert.equal(bob.length, 0);
    bob.open("ann");
    assert.equal(bob.length, 2);
  });

  it("drops duplicate client ids and damaged entries found in storage", () => {
    const storage = new MemoryStorage();
    const body = { client_id: "same-id-0001", queue_id: 1, action: "accept" };
    storage.setItem(KEY_PREFIX + "ann", JSON.stringify([
      { path: "/api/decide", queue_id: 1, body }, { path: "/api/decide", queue_id: 1, body },
      null, { path: "/api/decide", body: {} }, { path: "/api/undo", queue_id: null, body: { client_id: "undo-id-0002" } },
    ]));
    const outbox = new Outbox({ storage });
    outbox.open("ann");
    assert.deepEqual(outbox.ops.map((op) => op.body.client_id), ["same-id-0001", "undo-id-0002"]);
  });

  it("starts empty from unreadable storage, and works in memory when storage refuses writes", () => {
    const storage = new MemoryStorage();
    storage.setItem(KEY_PREFIX + "ann", "{not json");
    const outbox = new Outbox({ storage });
    outbox.open("ann");
    assert.equal(outbox.length, 0);
    const full = new Outbox({ storage: new MemoryStorage({ failWrites: true }) });
    full.open("ann");
    full.add("/api/decide", { client_id: id(), queue_id: 1, action: "skip" }, 1);
    assert.equal(full.length, 1);
  });

  it("keeps an entry stored while it is being sent, and forgets it once confirmed", async () => {
    const storage = new MemoryStorage();
    const { outbox, ops } = filled(storage, "ann", 2);
    const seenDuringSend = [];
    const server = new FakeServer();
    await outbox.drain({
      send: async (op) => {
        seenDuringSend.push(JSON.parse(storage.getItem(KEY_PREFIX + "ann")).map((o) => o.body.client_id));
        return server.send(op);
      },
      sleep: noSleep([]),
    });
    const [a, b] = ops.map((op) => op.body.client_id);
    assert.deepEqual(seenDuringSend, [[a, b], [b]]);
    assert.equal(storage.getItem(KEY_PREFIX + "ann"), "[]");
    const reloaded = new Outbox({ storage });
    reloaded.open("ann");
    assert.equal(reloaded.length, 0);
  });
});

describe("sending", () => {
  it("sends entries in the order they were made and reports each confirmation", async () => {
    const { outbox, ops } = filled(new MemoryStorage(), "ann", 4);
    const server = new FakeServer();
    const confirmed = [];
    const before = [];
    const emptied = await outbox.drain({
      send: (op) => server.send(op),
      before: async () => { before.push(outbox.length); },
      confirmed: (op, answer) => confirmed.push([op.body.client_id, answer.n]),
      sleep: noSleep([]),
    });
    assert.equal(emptied, true);
    const ids = ops.map((op) => op.body.client_id);
    assert.deepEqual(server.requests, ids);
    assert.deepEqual(confirmed, ids.map((cid, i) => [cid, i + 1]));
    assert.deepEqual(before, [4, 3, 2, 1]);
    assert.equal(outbox.length, 0);
  });

  it("resends a lost answer with the same client id, so the server stores it once", async () => {
    const { outbox, ops } = filled(new MemoryStorage(), "ann", 2);
    const server = new FakeServer();
    server.fail("lost", "down");
    const slept = [];
    const retries = [];
    await outbox.drain({
      send: (op) => server.send(op),
      retrying: async (error, op) => retries.push(op.body.client_id),
      sleep: noSleep(slept),
    });
    const [a, b] = ops.map((op) => op.body.client_id);
    assert.deepEqual(server.requests, [a, a, a, b]);   // the second entry waits for the first
    assert.deepEqual(server.stored.map((body) => body.client_id), [a, b]);
    assert.deepEqual(retries, [a, a]);
    assert.deepEqual(slept, [backoff(1), backoff(2)]);
    assert.equal(outbox.failures, 0);
    assert.equal(outbox.length, 0);
  });

  it("retries a 403 and a 5xx until the server confirms", async () => {
    const { outbox } = filled(new MemoryStorage(), "ann", 1);
    const server = new FakeServer();
    server.fail(403, 503, 503);
    const slept = [];
    assert.equal(await outbox.drain({ send: (op) => server.send(op), sleep: noSleep(slept) }), true);
    assert.equal(server.requests.length, 4);
    assert.equal(server.stored.length, 1);
    assert.deepEqual(slept, [500, 1000, 2000]);
  });

  it("drops an entry the server refuses for good and goes on with the next", async () => {
    const { outbox, ops } = filled(new MemoryStorage(), "ann", 2);
    const server = new FakeServer();
    server.fail(409);
    const refused = [];
    const emptied = await outbox.drain({
      send: (op) => server.send(op),
      refused: (op, error) => refused.push([op.body.client_id, error.status]),
      sleep: noSleep([]),
    });
    assert.equal(emptied, true);
    assert.deepEqual(refused, [[ops[0].body.client_id, 409]]);
    assert.deepEqual(server.stored.map((body) => body.client_id), [ops[1].body.client_id]);
  });

  it("stops on 401, keeping the entry, and sends it after the next login", async () => {
    const storage = new MemoryStorage();
    const { outbox, ops } = filled(storage, "ann", 2);
    const server = new FakeServer();
    server.fail(401);
    const stopped = [];
    const emptied = await outbox.drain({ send: (op) => server.send(op), stopped: (e) => stopped.push(e.status),
      sleep: noSleep([]) });
    assert.equal(emptied, false);
    assert.deepEqual(stopped, [401]);
    assert.equal(outbox.length, 2);

    const next = new Outbox({ storage });                 // the page reloaded and logged in again
    next.open("ann");
    assert.equal(await next.drain({ send: (op) => server.send(op), sleep: noSleep([]) }), true);
    assert.deepEqual(server.stored.map((body) => body.client_id), ops.map((op) => op.body.client_id));
  });

  it("takes a confirmed entry out even if the entries were reloaded while it was in flight", async () => {
    const storage = new MemoryStorage();
    const { outbox, ops } = filled(storage, "ann", 2);
    const server = new FakeServer();
    let reloaded = false;
    await outbox.drain({
      send: async (op) => {
        if (!reloaded) { reloaded = true; outbox.open("ann"); }    // a login in the middle of a send
        return server.send(op);
      },
      sleep: noSleep([]),
    });
    assert.equal(outbox.length, 0);
    assert.deepEqual(server.requests, ops.map((op) => op.body.client_id));
  });

  it("sends an entry added while draining, after the ones before it", async () => {
    const { outbox, ops } = filled(new MemoryStorage(), "ann", 1);
    const server = new FakeServer();
    const late = { client_id: id() };
    await outbox.drain({
      send: async (op) => {
        if (server.requests.length === 0) outbox.add("/api/undo", late);
        return server.send(op);
      },
      sleep: noSleep([]),
    });
    assert.deepEqual(server.requests, [ops[0].body.client_id, late.client_id]);
  });
});
