"""The review page in real headless Chromium: keyboard-only triage, edits, undo, a lost write
retried, pairwise preferences, and untrusted text that stays text."""

from __future__ import annotations

import shutil
import time
from importlib.resources import files
from pathlib import Path

import pytest

from goldloop.records import Provenance, Record, Verdict
from goldloop.review import review_states
from goldloop.serve import create_app

from .serve_support import PASSWORD, add_users, drafted_pairs, filtered_round, live_server

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
XSS = ('<img src=x onerror="window.__xss = 1"><script>window.__xss = 2</script>'
       '<b onmouseover="window.__xss = 3">my billing invoice refund please</b>')

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None,
                                reason="needs Debian's chromium (scripts/setup --test installs it)")


@pytest.fixture
def browser():
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def _plant_xss(store, round: int = 1) -> str:
    """A candidate whose text is an HTML/script payload, flagged label-doubt so it comes first."""
    seed = store.records(origin="gold", split="train")[0]
    rec = Record.synthetic(XSS, "billing", Provenance(
        parents=(seed.id,), strategy="paraphrase.v1", backend="fake", model="fake", params={"temperature": 1.0},
        template_hash="t" * 16, request_key="xss-probe", round=round, created_at=time.time()))
    store.add_records([rec])
    store.add_verdicts([Verdict(rec.id, "label_consistency.v1", True, 0.12, "reads as outage", round,
                                flag="label-doubt")])
    return rec.id


def _log_in(page, url: str, name: str) -> None:
    """Log in with the keyboard alone (the name field has focus) and wait for the first item."""
    page.goto(url + "/")
    page.wait_for_selector("#login-name", state="visible")
    page.keyboard.type(name)
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_selector("#item[data-queue-id]:not([data-queue-id=''])", state="visible")


def _press(page, key: str) -> None:
    """Press ``key`` and wait until the page has painted what it leads to."""
    before = page.evaluate("document.body.dataset.paints || '0'")
    page.keyboard.press(key)
    page.wait_for_function("(b) => (document.body.dataset.paints || '0') !== b", arg=before, timeout=5000)


def test_keyboard_triage_stores_decisions_and_signals(project, browser, tmp_path):
    path, cfg, store = filtered_round(project, per_label=4, pairs_per_label=1, prefetch=4)
    xss_id = _plant_xss(store)
    add_users(store)
    app = create_app(path, cfg, store)
    with live_server(app) as url:
        page = browser.new_page()
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        _log_in(page, url, "ann")

        # The label-doubt item comes first, and its payload is shown as text, not run.
        assert page.text_content("#record-id") == xss_id
        assert page.text_content("#text") == XSS
        assert page.locator("#text img, #text script, #text b").count() == 0
        assert page.is_visible("#doubt") and "label-doubt" in page.text_content("#doubt")
        assert page.evaluate("window.__xss === undefined")
        assert "billing" in page.text_content("#label") and page.locator("#seeds li").count() >= 1
        assert "label_consistency.v1" in page.text_content("#verdicts")

        log: list[tuple[str, str]] = []

        def act(key: str, action: str) -> None:
            log.append((page.text_content("#record-id"), action))
            _press(page, key)

        act("ArrowRight", "accept")                      # the XSS candidate
        act("x", "reject")
        # Edit: e opens the editor with the text; type a correction; Ctrl+Enter saves.
        edited_id = page.text_content("#record-id")
        original = page.text_content("#text")
        page.keyboard.press("e")
        page.wait_for_selector("#edit-text", state="visible")
        page.keyboard.press("Control+a")
        page.keyboard.type("my invoice shows a double charge please refund it")
        assert page.locator("#edit-diff ins").count() >= 1          # the diff against the original
        log.append((edited_id, "edit"))
        _press(page, "Control+Enter")
        inserted = " ".join(page.locator("#last ins").all_text_contents())
        assert "double" in inserted and "refund" in inserted          # the edit, shown as a diff

        skipped = page.text_content("#record-id")
        act("s", "skip")
        _press(page, "u")                                # undo the skip: the item comes back
        log.pop()
        assert page.text_content("#record-id") == skipped
        act("a", "accept")

        # A write lost on the way back: the server stored it, the page saw a failure. The outbox
        # sends it again with the same id; it must be stored exactly once.
        state = {"failed": 0}
        playwright_error = pytest.importorskip("playwright.sync_api").Error

        def lose_answer(route):
            if state["failed"] == 0:
                state["failed"] = 1
                route.fetch()                            # reaches the server, answer dropped
                try:
                    route.abort("connectionreset")
                except playwright_error as exc:          # the page gave up on it first: lost all the same
                    if "already handled" not in str(exc):
                        raise
            else:
                route.continue_()

        page.route("**/api/decide", lose_answer)
        act("ArrowLeft", "reject")
        page.wait_for_function("() => document.getElementById('net').textContent === 'all saved'", timeout=15000)
        page.unroute("**/api/decide")
        assert state["failed"] == 1

        # The rest of the singles, then the pairwise items. Keys pressed faster than a loaded
        # machine answers can empty the prefetch buffer for a moment: wait for the next item.
        def shown_kind() -> str | None:
            page.wait_for_selector("#item", state="visible", timeout=10000)
            return page.get_attribute("#item", "data-kind")

        while shown_kind() == "single":
            act("ArrowRight" if len(log) % 2 else "ArrowLeft", "accept" if len(log) % 2 else "reject")
        assert page.get_attribute("#item", "data-kind") == "pair"
        pair_a = page.text_content("#pair-a")
        pair_b = page.text_content("#pair-b")
        _press(page, "1")
        _press(page, "u")                                # undo the preference: the pair comes back
        assert page.text_content("#pair-a") == pair_a
        _press(page, "2")                                # B over A
        page.wait_for_function("() => document.getElementById('net').textContent === 'all saved'", timeout=15000)
        paint = page.evaluate("""() => [Number(document.getElementById('item').dataset.keyAt || 0),
                                        Number(document.getElementById('item').dataset.paintedAt || 0)]""")
        page.screenshot(path=str(tmp_path / "review.png"))
        assert dialogs == [] and page.evaluate("window.__xss === undefined")

    # Stored decisions match what was pressed, each exactly once.
    decisions = [d for d in store.decisions(round=1) if d.reviewer == "ann"]
    standing = review_states(decisions)
    expected: dict[str, str] = {}
    for rid, action in log:
        expected[rid] = action
    assert {rid: standing[rid].action for rid in expected} == expected
    assert sum(d.action != "undo" for d in decisions) == len(log) + 1        # + the undone skip
    assert [d.action for d in decisions].count("undo") == 1
    edited = store.get_record(standing[edited_id].new_record_id)
    assert edited.origin == "edited" and edited.provenance.parents == (edited_id,)
    assert edited.text == "my invoice shows a double charge please refund it" and edited.provenance.reviewer == "ann"
    comparisons = store.comparisons(round=1)
    assert [c.winner for c in comparisons] == ["a", "undo", "b"]

    # Derived signals follow the decisions.
    from goldloop.training_signals import derive

    signals = derive(store, round=1)
    accepted = {rid for rid, a in expected.items() if a == "accept"}
    rejected = {rid for rid, a in expected.items() if a == "reject"}
    assert {r.record_id for r in signals.kto if r.label} >= accepted
    assert {r.record_id for r in signals.kto if not r.label} == rejected
    assert {r.record_id for r in signals.sft} == accepted | {edited.id}
    edit_pairs = [r for r in signals.dpo if r.chosen == edited.text]
    assert len(edit_pairs) == 1 and edit_pairs[0].rejected == original
    assert any(r.chosen == pair_b and r.rejected == pair_a for r in signals.dpo)
    assert all(r.decision_id is not None for r in signals.sft)
    assert paint[1] > 0


def test_ranking_screen_by_keyboard(project, browser, tmp_path):
    path, cfg, store = filtered_round(project, per_label=4, rank_size=4)
    _plant_xss(store)
    add_users(store)
    app = create_app(path, cfg, store)
    with live_server(app) as url:
        page = browser.new_page()
        _log_in(page, url, "ann")

        _press(page, "r")
        assert page.is_visible("#rank")
        first = page.evaluate("document.body.dataset.rankShown").split(",")
        assert len(first) == 4 and page.locator("#rank-cards li").count() == 4
        assert page.locator("#rank-cards img, #rank-cards script, #rank-cards b").count() == 0
        _press(page, "3")
        _press(page, "Backspace")                        # taken back
        assert page.text_content("#rank-order") == ""
        for key in ("2", "1", "4"):
            _press(page, key)
        assert page.text_content("#rank-order") == "best first: 2 › 1 › 4"
        assert "#1" in page.text_content("#rank-cards li:nth-child(2) .rank-place")
        _press(page, "Enter")                            # saves; the 3rd comes last; a new set shows
        second = page.evaluate("document.body.dataset.rankShown").split(",")
        assert not set(second) & set(first), "a ranked candidate is not offered again"
        assert "ranked 4 candidates" in page.text_content("#rank-last")
        _press(page, "1")
        page.screenshot(path=str(tmp_path / "rank.png"))
        _press(page, "Backspace")
        page.wait_for_function("() => document.getElementById('net').textContent === 'all saved'", timeout=15000)
        page.keyboard.press("Escape")
        assert not page.is_visible("#rank")
        queue_id = page.get_attribute("#item", "data-queue-id")
        _press(page, "ArrowRight")                       # triage keys work again
        assert page.get_attribute("#item", "data-queue-id") != queue_id
        assert page.evaluate("window.__xss === undefined")

    rankings = [r for r in store.rankings(round=1) if r.reviewer == "ann"]
    assert [r.record_ids for r in rankings] == [(first[1], first[0], first[3], first[2])]
    from goldloop.training_signals import derive

    reward = [r for r in derive(store, round=1).reward if r.ranking_id == rankings[0].id]
    assert len(reward) == 6                              # every ordered pair of four


def _counts(page) -> dict[str, int]:
    """The header's queue counts: {"open": n, "decided": n, "mine": n}."""
    text = page.text_content("#counts") or ""
    parts = dict(part.strip().rsplit(" ", 1) for part in text.split("·")[1:4])
    return {name: int(value) for name, value in parts.items()}


def test_header_counts_follow_skips_and_undo(project, browser):
    path, cfg, store = filtered_round(project, per_label=4, prefetch=4)
    add_users(store)
    app = create_app(path, cfg, store)
    with live_server(app) as url:
        page = browser.new_page()
        _log_in(page, url, "ann")
        page.wait_for_function("() => document.getElementById('counts').textContent.includes('mine')")
        before = _counts(page)
        assert before["mine"] == 0 and before["open"] > 0

        _press(page, "s")
        # Well inside the page's 15-second periodic refresh: the header follows the saved skip.
        page.wait_for_function("(b) => document.getElementById('counts').textContent !== b",
                               arg=page.text_content("#counts"), timeout=5000)
        after = _counts(page)
        assert after == {"open": before["open"] - 1, "decided": before["decided"] + 1, "mine": 1}

        _press(page, "u")                                # within 3 s of the last request: it waits its turn
        page.wait_for_function("(b) => document.getElementById('counts').textContent !== b",
                               arg=page.text_content("#counts"), timeout=8000)
        assert _counts(page) == before


def test_page_modules_load_as_javascript_under_the_csp(project, browser):
    path, cfg, store = filtered_round(project, per_label=2)
    app = create_app(path, cfg, store)
    with live_server(app) as url:
        page = browser.new_page()
        served: dict[str, str] = {}
        problems: list[str] = []
        page.on("response", lambda r: served.__setitem__(r.url.rsplit("/", 1)[-1], r.headers.get("content-type", ""))
                if r.url.endswith(".js") else None)
        # A 401 from /api/me before login is expected; a refused or broken script is not.
        page.on("console", lambda m: problems.append(m.text)
                if m.type == "error" and not m.text.startswith("Failed to load resource") else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.goto(url + "/")
        page.wait_for_selector("#login-name", state="visible")      # main.js ran and asked for a login
        scripts = page.evaluate("Array.from(document.scripts, (s) => [s.type, s.getAttribute('src')])")

    assert scripts == [["module", "/static/main.js"]]
    modules = {p.name for p in files("goldloop.serve").joinpath("static").iterdir() if p.name.endswith(".js")}
    assert set(served) == modules, "every module in static/ is part of the page, and nothing else is loaded"
    assert all(kind.split(";")[0] in ("text/javascript", "application/javascript") for kind in served.values()), served
    assert problems == []


def test_a_pair_shows_prompt_and_response_and_its_response_is_edited(tmp_path, browser):
    """The generate task on the page: both sides shown as text, the label hidden, an edit rewrites
    the response (line breaks kept)."""
    rows = [{"prompt": f"What does tool {i} do?", "response": f"It fixes {i} things."} for i in range(6)]
    cfg, store = drafted_pairs(tmp_path, rows, "What does the <i>new</i> tool do?\n### Response\n"
                                               "It <img src=x onerror=\"window.__xss=1\"> welds.")
    with live_server(create_app(tmp_path, cfg, store)) as url:
        page = browser.new_page()
        _log_in(page, url, "ann")
        assert page.text_content("#text") == "What does the <i>new</i> tool do?"
        assert page.text_content("#response") == 'It <img src=x onerror="window.__xss=1"> welds.'
        assert page.is_visible("#response") and not page.is_visible("#label")
        assert page.evaluate("window.__xss") is None
        queue_id = page.get_attribute("#item", "data-queue-id")
        page.keyboard.press("e")
        page.wait_for_selector("#edit-text", state="visible")
        assert page.input_value("#edit-text").startswith("It <img")
        page.fill("#edit-text", "It welds metal.\n\nWear a mask.")
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        _press(page, "Control+Enter")
        assert "welds" in " ".join(page.locator("#last ins").all_text_contents()) and not errors
        page.wait_for_function("(q) => document.querySelector('#item').dataset.queueId !== q", arg=queue_id,
                               timeout=5000)
        deadline = time.time() + 5
        while time.time() < deadline and not [d for d in store.decisions(round=1) if d.action == "edit"]:
            time.sleep(0.05)
        edit = next(d for d in store.decisions(round=1) if d.action == "edit")
        assert store.get_record(edit.new_record_id).response == "It welds metal.\n\nWear a mask."
    store.close()


def test_a_suite_case_is_marked_and_only_its_label_is_corrected(project, browser):
    """A stress-test suite case on the page: marked as a suite item with its expected label; in the
    editor its text is read-only and the label is what changes; the correction lands in the suite."""
    from goldloop.embed import CachedEmbedder, HashingEmbedder
    from goldloop.llm import FakeLLM
    from goldloop.suites import case_states, draft_suite

    path, cfg, store = project
    cfg.filter.label_consistency = "off"
    cfg.filter.near_dup_threshold = 1.0
    draft_suite(store, cfg, FakeLLM(), lambda: CachedEmbedder(HashingEmbedder(), store), "edge", "edge_case.v1", 1,
                show_progress=False)
    add_users(store)
    with live_server(create_app(path, cfg, store)) as url:
        page = browser.new_page()
        _log_in(page, url, "ann")
        assert page.text_content("#label-kind") == "suite edge · expected label"
        assert "stress-test suite 'edge'" in page.text_content("#suggestion") and page.is_visible("#suggestion")
        expected = page.text_content("#label")
        other = next(x for x in ("account", "billing", "outage") if x != expected)
        page.keyboard.press("e")
        page.wait_for_selector("#edit-text", state="visible")
        assert page.evaluate("document.querySelector('#edit-text').readOnly")
        page.select_option("#edit-label", other)
        _press(page, "Control+Enter")
        deadline = time.time() + 5
        while time.time() < deadline and not case_states(store, "edge"):
            time.sleep(0.05)
        (decision,) = case_states(store, "edge").values()
        assert (decision.action, decision.expected, decision.reviewer) == ("correct", other, "ann")
    store.close()
