"""The review server's HTTP API: logins, CSRF, roles, leases, decisions, undo, bulk repair, agreement."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from goldloop.cli import main
from goldloop.filters import passing
from goldloop.records import Verdict
from goldloop.review import review_states
from goldloop.serve import AuthError, add_user, cohen_kappa, create_app, list_users

from .serve_support import PASSWORD, add_users, drafted_pairs, filtered_round, login


@pytest.fixture
def served(team_project):
    path, cfg, store = filtered_round(team_project, per_label=4)
    add_users(store)
    return path, cfg, store, create_app(path, cfg, store)


def _client(app, name: str | None = None) -> TestClient:
    client = TestClient(app)
    if name:
        login(client, name)
    return client


def _decide(client, item, action="accept", cid=None, **extra):
    body = {"client_id": cid or f"op-{item['queue_id']}-{action}-{len(extra)}", "queue_id": item["queue_id"],
            "action": action, **extra}
    return client.post("/api/decide", json=body)


def test_no_write_without_login_and_csrf(served):
    *_, app = served
    anon = _client(app)
    assert anon.get("/api/me").status_code == 401
    assert anon.post("/api/next", json={}).status_code == 401
    client = _client(app)
    assert client.post("/api/login", json={"name": "ann", "password": "wrong password"}).status_code == 401
    login(client, "ann")
    del client.headers["X-CSRF-Token"]
    assert client.post("/api/next", json={}).status_code == 403
    client.headers["X-CSRF-Token"] = "forged"
    assert client.post("/api/next", json={}).status_code == 403
    cookie = client.cookies.get("goldloop_session")
    assert cookie and len(cookie) >= 40


def test_session_cookie_is_httponly_strict_and_stored_hashed(served):
    _, _, store, app = served
    response = _client(app).post("/api/login", json={"name": "ann", "password": PASSWORD})
    header = response.headers["set-cookie"].lower()
    assert "httponly" in header and "samesite=strict" in header
    token = response.cookies["goldloop_session"]
    assert not store.query("SELECT 1 FROM review_sessions WHERE token_hash = ?", (token,))
    assert "argon2id" in store.query("SELECT password_hash FROM review_users WHERE name = 'ann'")[0][0]


def test_failed_logins_are_limited(served):
    *_, app = served
    client = _client(app)
    codes = [client.post("/api/login", json={"name": "bob", "password": f"guess {i}"}).status_code for i in range(6)]
    assert codes[:5] == [401] * 5 and codes[5] == 429
    assert client.post("/api/login", json={"name": "bob", "password": PASSWORD}).status_code == 429


def test_pages_carry_a_strict_content_security_policy(served):
    *_, app = served
    response = _client(app).get("/")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "<script type=\"module\" src=\"/static/main.js\"" in response.text and "onclick" not in response.text


def test_roles_gate_signals_agreement_bulk_and_users(served):
    *_, app = served
    ann, cat, dan = _client(app, "ann"), _client(app, "cat"), _client(app, "dan")
    assert ann.get("/api/agreement").status_code == 403
    assert ann.get("/api/signals").status_code == 403
    assert ann.post("/api/bulk/preview", json={"mode": "pattern", "pattern": "x", "action": "reject"}).status_code == 403
    assert cat.get("/api/agreement").status_code == 200
    assert cat.get("/api/signals").status_code == 200
    assert cat.get("/api/users").status_code == 403
    assert cat.post("/api/users", json={"name": "eve", "role": "admin", "password": PASSWORD}).status_code == 403
    assert dan.post("/api/users", json={"name": "eve", "role": "reviewer", "password": PASSWORD}).status_code == 200
    assert "eve" in [u["name"] for u in dan.get("/api/users").json()["users"]]
    assert dan.post("/api/users", json={"name": "eve", "role": "reviewer", "password": "short"}).status_code == 422


def test_leases_keep_items_apart_and_expire(served):
    path, cfg, store, app = served
    ann, bob = _client(app, "ann"), _client(app, "bob")
    a_items = ann.post("/api/next", json={"want": 5}).json()["items"]
    b_items = bob.post("/api/next", json={"want": 5}).json()["items"]
    assert len(a_items) == 5 and len(b_items) == 5
    assert not {i["queue_id"] for i in a_items} & {i["queue_id"] for i in b_items}
    # Asking again with what the page holds returns nothing new; without it, the same leases come back.
    assert ann.post("/api/next", json={"want": 5, "have": [i["queue_id"] for i in a_items]}).json()["items"] == []
    again = ann.post("/api/next", json={"want": 5}).json()["items"]
    assert {i["queue_id"] for i in again} == {i["queue_id"] for i in a_items}
    # Bob cannot decide Ann's item while her lease runs.
    response = _decide(bob, a_items[0])
    assert response.status_code == 409 and "another reviewer" in response.json()["error"]
    # Once her leases expire, the items go to someone else.
    with store.transaction() as db:
        db.execute("UPDATE review_queue SET lease_until = 1 WHERE reviewer = 'ann'")
    b_more = bob.post("/api/next", json={"want": 10, "have": [i["queue_id"] for i in b_items]}).json()["items"]
    assert {i["queue_id"] for i in a_items} <= {i["queue_id"] for i in b_more}


def test_label_doubt_first_and_what_an_item_shows(team_project):
    path, cfg, store = filtered_round(team_project, per_label=4)
    dropped, _, _ = passing(store.verdicts(round=1))
    candidates = [c for c in store.records(origin="synthetic", round=1) if c.id not in dropped]
    last = candidates[-1]
    store.add_verdicts([Verdict(last.id, "label_consistency.v1", True, 0.2, "reads as outage", 1, flag="label-doubt")])
    add_users(store)
    client = _client(create_app(path, cfg, store), "ann")
    first = client.post("/api/next", json={"want": 1}).json()["items"][0]
    record = first["records"][0]
    assert record["id"] == last.id and record["doubt"] == "reads as outage"
    assert record["strategy"] == last.provenance.strategy and record["label"] == last.label
    assert {s["id"] for s in record["seeds"]} == set(last.provenance.parents)
    assert {v["filter"] for v in record["verdicts"]} >= {"length.v1", "label_consistency.v1"}


def test_an_item_cites_the_nearest_approved_examples_and_never_held_out_data(served):
    _, _, store, app = served
    assert _client(app).get("/api/cite", params={"record": "x"}).status_code == 401
    ann = _client(app, "ann")
    item = ann.post("/api/next", json={"want": 1}).json()["items"][0]["records"][0]
    answer = ann.get("/api/cite", params={"record": item["id"], "top": 3})
    assert answer.status_code == 200, answer.text
    examples = answer.json()["examples"]
    gold = {r.id: r for r in store.records(origin="gold", split="train")}
    assert len(examples) == 3 and all(e["id"] in gold and e["text"] != item["text"] for e in examples)
    assert all(e["source"] == gold[e["id"]].provenance.source and e["reviewer"] == "" and not e["simulated"]
               and e["source_class"] == "first_party" for e in examples)
    assert examples[0]["similarity"] >= examples[-1]["similarity"]
    held = store.records(split="heldout")[0]
    for bad in (held.id, "no-such-record"):             # a held-out record is not even looked up
        assert ann.get("/api/cite", params={"record": bad}).status_code == 404
    assert ann.get("/api/cite", params={"record": item["id"], "top": 500}).status_code == 422


def test_decisions_are_idempotent_and_undo_reopens(served):
    _, _, store, app = served
    ann = _client(app, "ann")
    items = ann.post("/api/next", json={"want": 3}).json()["items"]
    first = _decide(ann, items[0], cid="same-id-123").json()
    assert _decide(ann, items[0], cid="same-id-123").json() == first
    assert _decide(ann, items[0], cid="other-id-456").status_code == 409        # decided already
    edit = _decide(ann, items[1], "edit", text="  my corrected   billing text please  ").json()
    assert store.get_record(edit["new_record_id"]).text == "my corrected billing text please"
    assert _decide(ann, items[2], "edit", text=items[2]["records"][0]["text"]).status_code == 422
    assert _decide(ann, items[2], "edit", text="x y z", label="no-such-label").status_code == 422
    undone = ann.post("/api/undo", json={"client_id": "undo-1-abcdef"}).json()
    assert undone["undid"] == "decision" and undone["item"]["queue_id"] == items[1]["queue_id"]
    states = review_states(store.decisions(round=1))
    assert states[items[0]["records"][0]["id"]].action == "accept"
    assert states[items[1]["records"][0]["id"]].action == "none"
    assert _decide(ann, items[1], "reject").json()["action"] == "reject"        # leased back to her
    # Bob's stack is his own.
    assert _client(app, "bob").post("/api/undo", json={"client_id": "undo-bob-1234"}).status_code == 409


def test_pairwise_preferences_and_their_undo(team_project):
    path, cfg, store = filtered_round(team_project, per_label=4, pairs_per_label=1)
    add_users(store)
    ann = _client(create_app(path, cfg, store), "ann")
    items = ann.post("/api/next", json={"want": 100}).json()["items"]
    pairs = [i for i in items if i["kind"] == "pair"]
    assert len(pairs) == 3 and all(i["kind"] == "single" for i in items[:-3])
    pair = pairs[0]
    a, b = (r["id"] for r in pair["records"])
    assert pair["records"][0]["label"] == pair["records"][1]["label"]
    assert _decide(ann, pair, "accept").status_code == 422
    assert _decide(ann, pair, "prefer", winner="b").json()["kind"] == "comparison"
    ann.post("/api/undo", json={"client_id": "undo-pair-123"})
    assert _decide(ann, pair, "prefer", cid="again-pair-1", winner="a").status_code == 200
    assert [(c.a_id, c.b_id, c.winner) for c in store.comparisons(round=1)] == [(a, b, "b"), (a, b, "undo"), (a, b, "a")]
    assert not store.decisions(round=1)


def test_a_ranking_becomes_reward_rows_once(served):
    _, _, store, app = served
    ann = _client(app, "ann")
    made = store.records(origin="synthetic", round=1)
    by_label: dict[str, list] = {}
    for rec in made:
        by_label.setdefault(rec.label, []).append(rec.id)
    label, ids = next((k, v) for k, v in by_label.items() if len(v) >= 3)
    body = {"client_id": "rank-123456", "record_ids": ids[:3]}
    first = ann.post("/api/rank", json=body).json()
    assert ann.post("/api/rank", json=body).json() == first                   # a retry stores nothing more
    assert [r.record_ids for r in store.rankings(round=1)] == [tuple(ids[:3])]
    other = next(v[0] for k, v in by_label.items() if k != label)
    mixed = ann.post("/api/rank", json={"client_id": "rank-mixed-1", "record_ids": [ids[0], other]})
    assert mixed.status_code == 422 and "share a label" in mixed.json()["error"]
    gold = store.records(origin="gold", split="train")[0].id
    assert ann.post("/api/rank", json={"client_id": "rank-gold-12", "record_ids": [ids[0], gold]}).status_code == 422
    reward = _client(app, "cat").get("/api/signals", params={"kind": "reward"}).json()
    ranked = [r for r in reward["reward"] if r.get("ranking_id") == first["ranking_id"]]
    texts = {r.id: r.text for r in made}
    assert {(r["chosen"], r["rejected"]) for r in ranked} == {
        (texts[ids[0]], texts[ids[1]]), (texts[ids[0]], texts[ids[2]]), (texts[ids[1]], texts[ids[2]])}


def test_the_ranking_screen_offers_each_candidate_once_per_reviewer(served):
    _, cfg, store, app = served
    from goldloop.filters import passing
    from goldloop.records import Decision

    dropped, _, _ = passing(store.verdicts(round=1))
    made = [r for r in store.records(origin="synthetic", round=1) if r.id not in dropped]
    rejected, excluded = made[0], made[1]
    store.add_decision(Decision(rejected.id, "reject", "bob", 1))
    eligible = {r.id: r.label for r in made if r.id not in (rejected.id, excluded.id)}
    ann = _client(app, "ann")
    offered: list[list[str]] = []
    labels: list[str] = []
    while True:
        answer = ann.post("/api/rank/next", json={"exclude": [excluded.id]})
        if answer.status_code == 404:
            assert "nothing left to rank" in answer.json()["error"]
            break
        body = answer.json()
        ids = [r["id"] for r in body["records"]]
        assert 2 <= len(ids) <= cfg.serve.rank_size and len(set(ids)) == len(ids)
        assert {eligible[i] for i in ids} == {body["label"]}, "one label per set, only eligible candidates"
        assert all(r["text"] and "seeds" in r and "verdicts" in r for r in body["records"])
        offered.append(ids)
        labels.append(body["label"])
        ranked = ann.post("/api/rank", json={"client_id": f"rank-screen-{len(offered)}", "record_ids": ids[::-1]})
        assert ranked.status_code == 200, ranked.text
        assert len(offered) < 50
    flat = [i for ids in offered for i in ids]
    assert len(flat) == len(set(flat)), "no candidate is offered to the same reviewer twice"
    left = {label: [i for i in eligible if eligible[i] == label and i not in flat] for label in set(eligible.values())}
    assert all(len(ids) < 2 for ids in left.values()), "sets stop only when no label has two candidates left"
    assert len(set(labels[:3])) == min(3, len(set(eligible.values()))), "the least-ranked label comes next"
    assert [r.record_ids for r in store.rankings(round=1)] == [tuple(ids[::-1]) for ids in offered]
    # another reviewer ranks the same candidates independently
    assert _client(app, "bob").post("/api/rank/next", json={}).status_code == 200


def test_bulk_repair_previews_then_applies(served):
    _, _, store, app = served
    cat = _client(app, "cat")
    dropped, _, _ = passing(store.verdicts(round=1))
    target = next(c for c in store.records(origin="synthetic", round=1) if c.id not in dropped)
    word = target.text.split()[1]
    spec = {"mode": "pattern", "pattern": rf"\b{word}\b", "action": "edit", "replacement": "REDACTED"}
    preview = cat.post("/api/bulk/preview", json=spec).json()
    assert preview["matches"] >= 1 and all("REDACTED" in row["new_text"] for row in preview["items"])
    assert all(word not in row["new_text"].split() for row in preview["items"])
    assert store.decisions(round=1) == []                                   # a preview writes nothing
    result = cat.post("/api/bulk/apply", json={**spec, "client_id": "bulk-apply-1", "record_ids": preview["record_ids"]}).json()
    assert result["applied"] == preview["matches"]
    decisions = store.decisions(round=1)
    assert len(decisions) == preview["matches"] and {d.action for d in decisions} == {"edit"}
    assert all(d.reviewer == "cat" for d in decisions)
    again = cat.post("/api/bulk/apply", json={**spec, "client_id": "bulk-apply-1", "record_ids": preview["record_ids"]})
    assert again.json() == result and len(store.decisions(round=1)) == len(decisions)
    # The repaired items are out of the queue.
    assert cat.post("/api/bulk/preview", json=spec).json()["matches"] == 0
    served_ids = {i["records"][0]["id"] for i in _client(app, "ann").post("/api/next", json={"want": 100}).json()["items"]}
    assert not served_ids & set(preview["record_ids"])
    # Near-duplicates of one record, rejected.
    near = cat.post("/api/bulk/preview", json={"mode": "near", "record_id": store.records(origin="synthetic", round=1)[-1].id,
                                               "threshold": 0.3, "action": "reject"}).json()
    assert near["matches"] >= 1
    assert cat.post("/api/bulk/preview", json={"mode": "pattern", "pattern": "(", "action": "reject"}).status_code == 422


def test_agreement_is_cohens_kappa_per_pair(served):
    path, cfg, store, app = served
    assert cohen_kappa(["accept", "reject", "accept", "accept"], ["accept", "reject", "reject", "accept"]) == 0.5
    from goldloop.records import Decision

    ids = [r.id for r in store.records(origin="synthetic", round=1)[:4]]
    for rid, x, y in zip(ids, ["accept", "reject", "accept", "accept"], ["accept", "reject", "reject", "accept"]):
        store.add_decision(Decision(rid, x, "ann", 1))
        store.add_decision(Decision(rid, y, "bob", 1))
    store.add_decision(Decision(ids[0], "undo", "bob", 1))
    rows = _client(app, "cat").get("/api/agreement").json()["pairs"]
    assert rows == [{"a": "ann", "b": "bob", "items": 3, "observed": pytest.approx(2 / 3, abs=1e-6), "kappa": 0.4}]


def test_users_cli(team_project):
    path, cfg, store = team_project
    runner = CliRunner()
    result = runner.invoke(main, ["-p", str(path), "users", "add", "zoe", "--role", "approver", "--password-stdin"],
                           input=PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    listed = runner.invoke(main, ["-p", str(path), "users", "list"])
    assert "zoe" in listed.output and "approver" in listed.output
    short = runner.invoke(main, ["-p", str(path), "users", "add", "amy", "--password-stdin"], input="short\n")
    assert short.exit_code == 1 and "too short" in short.output
    with pytest.raises(AuthError):
        add_user(store, "bad name!", "reviewer", PASSWORD)
    assert [u.name for u, _, _ in list_users(store)] == ["zoe"]


def test_a_body_over_the_limit_is_refused_before_it_is_read(served):
    """413 at once from Content-Length, on every route, logged in or not; nothing is parsed."""
    import socket

    from .serve_support import live_server

    path, cfg, store, _ = served
    cfg.serve.max_body_bytes = limit = 65536
    app = create_app(path, cfg, store, sync_on_start=False)
    big = b"x" * (limit + 1)
    for route in ("/api/login", "/api/decide", "/api/nope"):
        response = _client(app).post(route, content=big, headers={"content-type": "application/json"})
        assert response.status_code == 413, route
        assert "limit" in response.json()["error"]
    with live_server(app) as url:
        port = int(url.rsplit(":", 1)[1])
        # A declared 400 MB that is never sent: the answer comes after the headers alone.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 400000000\r\n\r\n" + b"{" * 1024)
            assert sock.recv(4096).startswith(b"HTTP/1.1 413")
        # Chunked, with no length: refused once the bytes read pass the limit.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n")
            chunk = b"x" * 8192
            try:
                for _ in range(limit // len(chunk) + 2):
                    sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except (BrokenPipeError, ConnectionResetError):
                pass                                   # the server answered and closed mid-upload
            assert sock.recv(4096).startswith(b"HTTP/1.1 413")


def test_unknown_routes_answer_in_the_same_error_shape(served):
    *_, app = served
    client = _client(app, "ann")
    missing = client.get("/api/nope")
    assert missing.status_code == 404 and set(missing.json()) == {"error"}
    wrong_method = client.get("/api/login")
    assert wrong_method.status_code == 405 and set(wrong_method.json()) == {"error"}
    assert "content-security-policy" in missing.headers


def test_a_web_edit_follows_the_same_rule_as_the_terminal(served):
    """Unknown labels are refused with a did-you-mean; a label-only edit keeps the text."""
    _, _, store, app = served
    client = _client(app, "ann")
    item = client.post("/api/next", json={"want": 1}).json()["items"][0]
    record = item["records"][0]
    typo = _decide(client, item, "edit", cid="op-typo-1", text="new text", label=record["label"].upper() + " ")
    assert typo.status_code == 422 and f"did you mean {record['label']!r}" in typo.json()["error"]
    other = next(label for label in store.labels() if label != record["label"])
    relabel = _decide(client, item, "edit", cid="op-relabel-1", label=other)
    assert relabel.status_code == 200, relabel.text
    edited = store.get_record(relabel.json()["new_record_id"])
    assert edited.text == record["text"] and edited.label == other


def test_stats_follow_a_skip_and_can_leave_the_signals_out(served):
    *_, app = served
    client = _client(app, "ann")
    before = client.get("/api/stats").json()
    assert set(before["signals"]) == {"sft", "kto", "dpo", "reward"}
    item = client.post("/api/next", json={"want": 1}).json()["items"][0]
    assert _decide(client, item, "skip", cid="op-stats-skip").status_code == 200
    after = client.get("/api/stats", params={"signals": "false"}).json()
    assert "signals" not in after
    assert after["queue"]["open"] == before["queue"]["open"] - 1
    assert after["queue"]["done"] == before["queue"]["done"] + 1 and after["queue"]["mine"] == 1


def test_pairs_are_reviewed_on_the_web_with_their_response_edited(tmp_path):
    """A generate project's item shows prompt and response; an edit rewrites the response."""
    from goldloop.training_signals import derive

    rows = [{"prompt": f"What does tool {i} do?\n\n  It has {i} parts.", "response": f"It fixes {i} things.\n\nSafely."}
            for i in range(8)]
    cfg, store = drafted_pairs(tmp_path, rows, "What does the new tool do?\n### Response\nIt <b>welds</b> metal.")
    client = _client(create_app(tmp_path, cfg, store), "ann")
    item = client.post("/api/next", json={"want": 1}).json()["items"][0]
    record = item["records"][0]
    assert record["pair"] is True and record["response"] == "It <b>welds</b> metal."   # data, escaped by the page
    assert record["seeds"] and all(s["response"] for s in record["seeds"])
    empty = _decide(client, item, "edit", cid="op-empty-1", response="   ")
    assert empty.status_code == 422
    fixed = _decide(client, item, "edit", cid="op-fix-1", response="It welds metal.\n\nWear a mask.")
    assert fixed.status_code == 200, fixed.text
    new = store.get_record(fixed.json()["new_record_id"])
    assert new.is_pair and new.text == record["text"] and new.response == "It welds metal.\n\nWear a mask."
    assert [(r.chosen, r.rejected) for r in derive(store, 1).dpo] == [(new.response, record["response"])]
    store.close()


def test_suite_cases_are_reviewed_on_the_web_marked_as_suite_items(project):
    """Before any round, the queue holds the stress-test suite's cases: accept, correct the expected
    label (the text cannot change), reject, skip and undo; decisions go to the suite, not the records."""
    from goldloop.embed import CachedEmbedder, HashingEmbedder
    from goldloop.llm import FakeLLM
    from goldloop.suites import case_states, draft_suite, freeze, pending_cases

    path, cfg, store = project
    cfg.filter.label_consistency = "off"
    cfg.filter.near_dup_threshold = 1.0
    draft_suite(store, cfg, FakeLLM(), lambda: CachedEmbedder(HashingEmbedder(), store), "edge", "edge_case.v1", 2,
                show_progress=False)
    waiting = pending_cases(store, "edge")
    assert len(waiting) >= 4
    add_users(store)
    ann = _client(create_app(path, cfg, store), "ann")
    items = ann.post("/api/next", json={"want": 5}).json()["items"]
    assert len(items) == min(5, len(waiting))
    record = items[0]["records"][0]
    assert record["origin"] == "suite" and record["suite"]["name"] == "edge" and record["id"].startswith("suite:")
    assert "never trained on" in record["suite"]["note"] and record["seeds"]
    case_of = {i["queue_id"]: i["records"][0]["id"].removeprefix("suite:") for i in items}
    assert _decide(ann, items[0], "accept").status_code == 200
    other = next(x for x in ("billing", "outage", "account") if x != items[1]["records"][0]["label"])
    refused = _decide(ann, items[1], "edit", cid="op-text-1", text="a new text", label=other)
    assert refused.status_code == 422 and "cannot be edited" in refused.json()["error"]
    assert _decide(ann, items[1], "edit", cid="op-label-1", text=items[1]["records"][0]["text"],
                   label=other).status_code == 200
    assert _decide(ann, items[2], "edit", cid="op-label-2", label="nope").status_code == 422
    assert _decide(ann, items[2], "reject").status_code == 200
    assert _decide(ann, items[3], "skip").status_code == 200
    states = case_states(store, "edge")
    assert states[case_of[items[0]["queue_id"]]].action == "accept"
    assert (states[case_of[items[1]["queue_id"]]].action, states[case_of[items[1]["queue_id"]]].expected) == (
        "correct", other)
    assert states[case_of[items[2]["queue_id"]]].reviewer == "ann"
    assert case_of[items[3]["queue_id"]] not in states                      # a skip stores nothing
    ann.post("/api/undo", json={"client_id": "undo-skip-1"})                # withdraws the skip: nothing changes
    undone = ann.post("/api/undo", json={"client_id": "undo-reject-1"}).json()
    assert undone["item"]["queue_id"] == items[2]["queue_id"]
    assert case_of[items[2]["queue_id"]] not in case_states(store, "edge")  # the reject is withdrawn
    assert not store.decisions() and not store.records(origin="edited")     # nothing reached the records
    version, _ = freeze(store, "edge", "ann")
    assert {c[2] for c in version.cases if c[0] == case_of[items[1]["queue_id"]]} == {other}
    assert store.verify_audit().ok
