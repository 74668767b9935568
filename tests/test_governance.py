"""Policies as code, approver sign-off and overrides, the audit log, lineage and citations."""

from __future__ import annotations

import json
import sqlite3

import pytest
from click.testing import CliRunner

from goldloop.cli import main
from goldloop.governance import PolicyError, check, enforce
from goldloop.records import Decision, Provenance, Record, now
from goldloop.snapshot import build_snapshot

PASSWORD = "correct horse battery"


def _drafts(store, per_label: int, number: int = 1, parents_from: str = "train") -> list[Record]:
    """Synthetic rows drafted from gold seeds of ``parents_from``, for round ``number``."""
    store.open_round()
    made = []
    for label in ("billing", "outage", "account"):
        seeds = [r for r in store.records(origin="gold", split=parents_from) if r.label == label][:2]
        for i in range(per_label):
            prov = Provenance(parents=tuple(s.id for s in seeds), strategy="paraphrase.v1", backend="fake",
                              model="fake-1", params={"temperature": 0.9}, template_hash="t" * 16,
                              request_key=f"k-{label}-{i}", round=number, created_at=now())
            made.append(Record.synthetic(f"synthetic {label} draft number {i} about my issue", label, prov))
    store.add_records(made)
    return made


def _snapshot(project, **policy):
    path, cfg, store = project
    for key, value in policy.items():
        setattr(cfg.policy, key, value)
    return build_snapshot(store, cfg, store.open_round())


def _messages(exc: PolicyError) -> dict[str, str]:
    return {f.rule: f.message for f in exc.failures}


def test_max_synthetic_share_blocks_with_the_numbers(project):
    _drafts(project[2], per_label=10)
    with pytest.raises(PolicyError) as caught:
        _snapshot(project, max_synthetic_share=0.25)
    msg = _messages(caught.value)["max_synthetic_share"]
    assert msg.startswith("the training set is 38.5% synthetic (30 of 78 rows); the limit is 25%")
    assert "goldloop snapshot override" in str(caught.value)
    assert project[2].snapshots() == []                     # nothing stored when blocked


def test_min_gold_per_label_names_each_short_label(project):
    _drafts(project[2], per_label=1)
    with pytest.raises(PolicyError) as caught:
        _snapshot(project, min_gold_per_label=20)
    assert _messages(caught.value)["min_gold_per_label"] == (
        "3 label(s) have fewer than 20 gold rows: account has 16, billing has 16, outage has 16. "
        "Ingest more gold examples for them.")


def test_human_review_all_and_sampled(project):
    path, cfg, store = project
    made = _drafts(store, per_label=4)
    store.add_decision(Decision(made[0].id, "accept", "ann", 1))
    with pytest.raises(PolicyError) as caught:
        _snapshot(project, review_required="all")
    assert _messages(caught.value)["human_review"].startswith(
        "11 of 12 synthetic rows were not accepted by a reviewer")
    with pytest.raises(PolicyError) as caught:
        _snapshot(project, review_required="sampled", review_sample_rate=0.25)
    assert _messages(caught.value)["human_review"].startswith(
        "1 of 12 synthetic rows were reviewed; the policy samples 25%, so 3 must be")
    store.add_decision(Decision(made[1].id, "accept", "ann", 1))
    store.add_decision(Decision(made[2].id, "accept", "bob", 1))
    snap = _snapshot(project, review_required="sampled", review_sample_rate=0.25)
    results = {r["rule"]: r for r in snap.manifest["policy_results"]}
    assert results["human_review"]["passed"] and results["human_review"]["numbers"]["reviewed"] == 3


def test_heldout_seeds_block_and_cannot_be_overridden(project):
    path, cfg, store = project
    _drafts(store, per_label=2, parents_from="heldout")
    with pytest.raises(PolicyError) as caught:
        _snapshot(project)
    assert _messages(caught.value)["heldout_isolation"].startswith("6 row(s) were drafted from held-out seeds")
    assert "override" not in str(caught.value)             # no way around isolation is offered
    snap_id = str(caught.value).split("snapshot ")[1].split(" ")[0]
    _add_approver(store)
    result = CliRunner().invoke(main, ["-p", str(path), "snapshot", "override", snap_id, "--rule",
                                       "heldout_isolation", "--approver", "alice", "--reason", "trust me",
                                       "--password-stdin"], input=PASSWORD + "\n")
    assert result.exit_code == 1 and "cannot be overridden" in result.output


def test_no_synthetic_only(project):
    path, cfg, store = project
    made = _drafts(store, per_label=2)
    snap = _snapshot(project)
    from dataclasses import replace

    only_made = replace(snap, id="0" * 16, record_ids=tuple(r.id for r in made))
    with pytest.raises(PolicyError) as caught:
        enforce(store, cfg, only_made, "export")
    assert "training on synthetic data alone is not allowed" in _messages(caught.value)["no_synthetic_only"]


def _add_approver(store, name="alice", role="approver"):
    from goldloop.serve import add_user

    add_user(store, name, role, PASSWORD)


def test_signoff_is_needed_for_export_and_checked_against_the_approver(project):
    path, cfg, store = project
    _drafts(store, per_label=2)
    cfg.policy.signoff_required = True
    cfg.save(path)
    snap = _snapshot(project)                               # a snapshot may exist unsigned ...
    with pytest.raises(PolicyError) as caught:              # ... but not leave for training unsigned
        enforce(store, cfg, snap, "export")
    assert _messages(caught.value)["signoff"] == (
        f"use case 'test' needs an approver's sign-off of snapshot {snap.id}: "
        f"goldloop snapshot signoff {snap.id} --approver NAME")
    enforce(store, cfg, snap, "evaluate")                   # judging a round needs no sign-off

    _add_approver(store, "rita", "reviewer")
    _add_approver(store)
    runner = CliRunner()
    base = ["-p", str(path), "snapshot", "signoff", snap.id[:8], "--password-stdin"]
    refused = runner.invoke(main, base + ["--approver", "rita"], input=PASSWORD + "\n")
    assert refused.exit_code == 1 and "rita is a reviewer" in refused.output
    wrong = runner.invoke(main, base + ["--approver", "alice"], input="not the password\n")
    assert wrong.exit_code == 1 and "wrong password for alice" in wrong.output
    ok = runner.invoke(main, base + ["--approver", "alice", "--note", "spot-checked 50 rows"], input=PASSWORD + "\n")
    assert ok.exit_code == 0, ok.output
    assert {r.rule: r.passed for r in enforce(store, cfg, snap, "export")}["signoff"]
    entry = [e for e in store.audit_entries() if e["kind"] == "signoff"][-1]
    assert entry["actor"] == "alice" and entry["payload"]["snapshot"] == snap.id


def test_an_approver_override_is_audited_and_lets_the_rule_through(project):
    path, cfg, store = project
    _drafts(store, per_label=10)
    cfg.policy.max_synthetic_share = 0.25
    cfg.save(path)
    runner = CliRunner()
    blocked = runner.invoke(main, ["-p", str(path), "snapshot", "create", "--no-diversity"])
    assert blocked.exit_code == 1 and "max_synthetic_share" in blocked.output
    snap_id = blocked.output.split("snapshot ")[1].split(" ")[0]
    _add_approver(store)
    over = runner.invoke(main, ["-p", str(path), "snapshot", "override", snap_id, "--rule", "max_synthetic_share",
                                "--approver", "alice", "--reason", "pilot run, reviewed by hand",
                                "--password-stdin"], input=PASSWORD + "\n")
    assert over.exit_code == 0, over.output
    made = runner.invoke(main, ["-p", str(path), "snapshot", "create", "--no-diversity"])
    assert made.exit_code == 0, made.output
    snap = store.get_snapshot(snap_id)
    result = {r.rule: r for r in check(store, cfg, snap, "export")}["max_synthetic_share"]
    assert not result.passed and result.overridden_by == "alice: pilot run, reviewed by hand"
    entry = [e for e in store.audit_entries() if e["kind"] == "override"][-1]
    assert entry["actor"] == "alice"
    assert entry["payload"]["reason"] == "pilot run, reviewed by hand" and entry["payload"]["rule"] == "max_synthetic_share"
    assert store.verify_audit().ok


def test_snapshot_list_show_and_diff(project):
    path, cfg, store = project
    runner = CliRunner()
    first = _snapshot(project)
    _drafts(store, per_label=2, number=2)
    second = build_snapshot(store, cfg, 2)
    listed = runner.invoke(main, ["-p", str(path), "snapshot", "list"])
    assert listed.exit_code == 0 and first.id in listed.output and second.id in listed.output
    shown = runner.invoke(main, ["-p", str(path), "snapshot", "show", "latest", "--json"])
    data = json.loads(shown.output)
    assert data["id"] == second.id and data["manifest"]["by_origin"] == {"gold": 48, "synthetic": 6}
    assert data["manifest"]["by_model"] == {"fake:fake-1": 6} and data["manifest"]["by_round"] == {"2": 6}
    assert data["manifest"]["diversity"]["synthetic"]["rows"] == 6
    assert {p["rule"] for p in data["policy"]} >= {"heldout_isolation", "max_synthetic_share"}
    diff = runner.invoke(main, ["-p", str(path), "snapshot", "diff", first.id, "latest"])
    assert diff.exit_code == 0 and "+6 -0 rows" in diff.output and "6 synthetic/" not in diff.output
    assert "2 synthetic/billing" in diff.output
    missing = runner.invoke(main, ["-p", str(path), "snapshot", "show", "nope"])
    assert missing.exit_code == 1 and "no snapshot 'nope'" in missing.output


def test_audit_verify_catches_a_row_edited_in_the_database(project):
    path, cfg, store = project
    made = _drafts(store, per_label=2)
    store.add_decision(Decision(made[0].id, "reject", "ann", 1))
    runner = CliRunner()
    ok = runner.invoke(main, ["-p", str(path), "audit", "verify"])
    assert ok.exit_code == 0 and "audit log intact" in ok.output
    db = sqlite3.connect(path / ".goldloop" / "store.db")
    db.execute("UPDATE decisions SET action = 'accept'")
    db.execute("UPDATE records SET label = 'billing' WHERE id = ?", (made[-1].id,))
    db.commit()
    db.close()
    bad = runner.invoke(main, ["-p", str(path), "audit", "verify"])
    assert bad.exit_code == 1
    assert "decisions row [1] was edited" in bad.output
    assert f'records row ["{made[-1].id}"] was edited' in bad.output
    log = runner.invoke(main, ["-p", str(path), "audit", "log", "--kind", "decision"])
    assert log.exit_code == 0 and "ann" in log.output


def test_trace_reaches_the_gold_seeds_from_an_edited_row(project):
    path, cfg, store = project
    made = _drafts(store, per_label=1)
    draft = made[0]
    edited = Record.edited(draft, "a reviewer's better wording of the billing draft", draft.label, "ann", 1)
    store.add_decision(Decision(draft.id, "edit", "ann", 1, new_record_id=edited.id), new_record=edited)
    snap = _snapshot(project)
    result = CliRunner().invoke(main, ["-p", str(path), "trace", edited.id, "--json"])
    assert result.exit_code == 0, result.output
    tree = json.loads(result.output)
    assert tree["origin"] == "edited" and tree["snapshots"] == [snap.id]
    parent = tree["parents"][0]
    assert parent["id"] == draft.id and parent["decisions"][0]["action"] == "edit"
    assert parent["decisions"][0]["reviewer"] == "ann"
    assert parent["provenance"]["model"] == "fake-1" and parent["provenance"]["strategy"] == "paraphrase.v1"
    seeds = parent["parents"]
    assert len(seeds) == 2 and all(s["origin"] == "gold" and s["split"] == "train" for s in seeds)
    assert all("gold.csv" in s["provenance"]["source"] for s in seeds)
    text = CliRunner().invoke(main, ["-p", str(path), "trace", edited.id[:10]])
    assert "gold from" in text.output and "edited by ann" in text.output


def test_cite_returns_the_nearest_gold_examples(project):
    path, cfg, store = project
    result = CliRunner().invoke(main, ["-p", str(path), "cite", "refund for the invoice charge on my card",
                                       "-k", "3", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert len(rows) == 3 and [r["label"] for r in rows] == ["billing"] * 3
    heldout = {r.id for r in store.records(split="heldout")}
    assert not heldout & {r["id"] for r in rows}
    assert rows[0]["similarity"] >= rows[1]["similarity"] >= rows[2]["similarity"]


EXPORT_BLOCKS = [
    ({"max_synthetic_share": 0.1}, "max_synthetic_share",
     "the training set is 20.0% synthetic (12 of 60 rows); the limit is 10%"),
    ({"min_gold_per_label": 20}, "min_gold_per_label",
     "3 label(s) have fewer than 20 gold rows: account has 16, billing has 16, outage has 16"),
    ({"review_required": "all"}, "human_review", "12 of 12 synthetic rows were not accepted by a reviewer"),
    ({"review_required": "sampled", "review_sample_rate": 0.5}, "human_review",
     "0 of 12 synthetic rows were reviewed; the policy samples 50%, so 6 must be"),
    ({"signoff_required": True}, "signoff", "use case 'test' needs an approver's sign-off of snapshot"),
]


@pytest.mark.parametrize("policy,rule,message", EXPORT_BLOCKS, ids=[f"{r}-{i}" for i, (_, r, _) in
                                                                    enumerate(EXPORT_BLOCKS)])
def test_each_policy_blocks_an_export_with_its_numbers(project, policy, rule, message):
    path, cfg, store = project
    _drafts(store, per_label=4)
    snap = _snapshot(project)                               # made under the default policy
    for key, value in policy.items():
        setattr(cfg.policy, key, value)
    cfg.save(path)
    result = CliRunner().invoke(main, ["-p", str(path), "export", snap.id, "--format", "classification",
                                       "--to", str(path / "out")])
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert f"snapshot {snap.id} breaks the policy of use case 'test' at the export stage" in text
    assert f"{rule}: {message}" in text
    assert not (path / "out").exists()                      # nothing written


def _forced_snapshot(store, records, snap_id):
    """A snapshot stored behind the policy's back (as an old or tampered store could hold)."""
    from goldloop.records import Snapshot

    snap = Snapshot(snap_id, "forced", 1, tuple(r.id for r in records), {"records": len(records)}, now())
    store.add_snapshot(snap)
    return snap


@pytest.mark.parametrize("case", ["heldout_isolation", "no_synthetic_only"])
def test_isolation_and_gold_rules_block_an_export(project, case):
    path, cfg, store = project
    if case == "heldout_isolation":
        made = _drafts(store, per_label=1, parents_from="heldout")
        records = store.records(origin="gold", split="train") + made
        expected = "3 row(s) were drafted from held-out seeds"
    else:
        made = _drafts(store, per_label=1)
        records = made
        expected = "the training set has no real gold rows (3 rows, all synthetic or edited)"
    snap = _forced_snapshot(store, records, "f" * 16)
    result = CliRunner().invoke(main, ["-p", str(path), "export", snap.id, "--format", "sft", "--to",
                                       str(path / "out")])
    assert result.exit_code == 1
    assert f"{case}: {expected}" in " ".join(result.output.split())
    assert f"--rule {case}" not in result.output and not (path / "out").exists()


def test_an_overridden_rule_lets_the_export_through_and_the_card_says_so(project):
    path, cfg, store = project
    _drafts(store, per_label=4)
    snap = _snapshot(project)
    cfg.policy.max_synthetic_share = 0.1
    cfg.save(path)
    _add_approver(store)
    runner = CliRunner()
    over = runner.invoke(main, ["-p", str(path), "snapshot", "override", snap.id, "--rule", "max_synthetic_share",
                                "--stage", "export", "--approver", "alice", "--reason", "one-off pilot",
                                "--password-stdin"], input=PASSWORD + "\n")
    assert over.exit_code == 0, over.output
    done = runner.invoke(main, ["-p", str(path), "export", snap.id, "--format", "classification", "--to",
                                str(path / "out")])
    assert done.exit_code == 0, done.output
    card = (path / "out" / "README.md").read_text()
    assert "max_synthetic_share" in card and "alice: one-off pilot" in card
    kinds = [e["kind"] for e in store.audit_entries()]
    assert kinds.index("override") < kinds.index("export")
    assert store.verify_audit().ok


def test_a_stored_snapshot_is_checked_a_page_at_a_time_with_the_same_results(project, monkeypatch):
    """Read from the store in pages of two rows, a snapshot breaking several rules gives the results
    (messages, numbers, first examples) of the same rows checked at once."""
    import goldloop.governance as governance

    path, cfg, store = project
    made = _drafts(store, per_label=3) + _drafts(store, per_label=1, parents_from="heldout")
    heldout = store.records(origin="gold", split="heldout")[0]
    copy = Record.synthetic(heldout.text, heldout.label, Provenance(
        parents=(made[0].id,), strategy="paraphrase.v1", backend="fake", model="fake-1", params={"temperature": 0.9},
        template_hash="t" * 16, request_key="copy", round=1, created_at=now()))
    store.add_records([copy])
    store.add_decision(Decision(made[0].id, "accept", "ann", 1))
    store.add_decision(Decision(made[1].id, "accept", "sim", 1, simulated=True))
    rows = sorted(store.records(origin="gold", split="train") + made + [copy], key=lambda r: r.id)
    snap = _forced_snapshot(store, rows, "e" * 16)
    cfg.policy.review_required, cfg.policy.review_sample_rate = "sampled", 0.5
    cfg.policy.gold_only_labels = ["billing", "biling"]
    cfg.policy.max_synthetic_share = 0.1
    cfg.policy.min_gold_per_label = 20
    whole = [r.to_json() for r in check(store, cfg, snap, "export", rows)]
    monkeypatch.setattr(governance, "PAGE", 2)
    paged = [r.to_json() for r in check(store, cfg, snap, "export")]
    assert paged == whole
    failed = {r["rule"] for r in whole if not r["passed"]}
    assert {"heldout_isolation", "min_gold_per_label", "max_synthetic_share", "gold_only_labels",
            "human_review"} <= failed
    isolation = next(r for r in whole if r["rule"] == "heldout_isolation")
    assert isolation["numbers"] == {"heldout_in_set": 0, "heldout_seeded": 3, "heldout_text": 1}
    review = next(r for r in whole if r["rule"] == "human_review")
    assert review["numbers"]["reviewed"] == 1 and "1 accepted by a simulated reviewer only" in review["message"]
