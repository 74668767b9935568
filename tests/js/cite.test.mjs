// The review page's citations name who stands behind each cited label, and mark a simulated
// reviewer as such.
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { citedBy } from "../../src/goldloop/serve/static/cite.js";

describe("citedBy", () => {
  it("names the gold file and row of an ingested example", () => {
    assert.equal(citedBy({ reviewer: "", simulated: false, source_class: "first_party", source: "gold.csv row 4" }),
                 "gold · first_party: gold.csv row 4");
  });
  it("names the reviewer of a confirmed pool label and the public source it came from", () => {
    assert.equal(citedBy({ reviewer: "ann", simulated: false, source_class: "external", source: "forum.csv row 2",
                           citation: "arXiv:2308.12032" }),
                 "label by ann · external: forum.csv row 2, arXiv:2308.12032");
  });
  it("marks a simulated reviewer", () => {
    assert.match(citedBy({ reviewer: "simulated:label-oracle", simulated: true, source_class: "first_party",
                           source: "pool.csv row 9" }), /\(SIMULATED reviewer\)/);
  });
});
