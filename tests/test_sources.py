"""Every row's source class (first-party, LLM, simulator, external with citation and licence),
per-class policy caps, and labels whose training rows must be real."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from .conftest import make_rows, write_csv
from goldloop.cli import main
from goldloop.governance import PolicyError, check
from goldloop.records import Decision, Record
from goldloop.snapshot import GOLD_ONLY, build_snapshot
from goldloop.sources import SourceError, SourceInfo, class_counts, source_class
from goldloop.suggest import suggest, suggestions
from .test_governance import _drafts

CITE = "arXiv:2308.12032"


def _run(path, *args, ok: bool = True):
    result = CliRunner().invoke(main, ["-p", str(path), *args])
    assert (result.exit_code == 0) == ok, result.output
    return " ".join(result.output.split())


def _ingest_external(path, rows=None, *, license: str | None = "CC-BY-4.0", name="public.csv") -> str:
    file = write_csv(path / name, rows or [(f"public forum post {i} about a double charge on my card", "billing")
                                           for i in range(6)])
    return _run(path, "ingest", str(file), "--split", "train", "--source", "external", "--cite", CITE,
                *(["--license", license] if license else []))


@pytest.mark.parametrize("args,fragment", [
    (("external",), "--source external needs --cite"),
    (("external", "a paper I read"), "--cite 'a paper I read' is not a citation goldloop can check"),
    (("external", "doi:10.1000/xyz123", "CC BY 4.0"), "--license 'CC BY 4.0' is not a licence id"),
    (("first_party", CITE), "--cite and --license describe a public source: give them with --source external"),
    (("llm",), "--source must be one of first_party, simulator, external, not 'llm'"),
])
def test_a_bad_source_citation_or_licence_is_refused_with_what_to_do(args, fragment) -> None:
    with pytest.raises(SourceError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        SourceInfo.parse(*args)


def test_an_external_rows_citation_and_licence_reach_the_manifest_the_card_and_trace(project) -> None:
    path, cfg, store = project
    said = _ingest_external(path)
    assert f"source: external, {CITE}, licence CC-BY-4.0" in said
    assert (f"ingested by source class: first_party 60, external 6; public sources: {CITE} (CC-BY-4.0)"
            in _run(path, "status"))
    external = [r for r in store.records(origin="gold") if source_class(r) == "external"]
    assert len(external) == 6 and all(r.provenance.params["license"] == "CC-BY-4.0" for r in external)
    assert source_class(store.records(origin="gold")[0]) == "first_party"
    _drafts(store, per_label=2)
    snap = build_snapshot(store, cfg, store.open_round())
    m = snap.manifest
    assert m["by_source_class"] == {"first_party": 48, "llm": 6, "simulator": 0, "external": 6}
    assert m["citations"] == [{"citation": CITE, "license": "CC-BY-4.0", "rows": 6}]
    traced = _run(path, "trace", external[0].id)
    assert f"source class: external, {CITE}, licence CC-BY-4.0" in traced
    tree = json.loads(CliRunner().invoke(main, ["-p", str(path), "trace", external[0].id, "--json"]).output)
    assert (tree["source_class"], tree["citation"], tree["license"]) == ("external", CITE, "CC-BY-4.0")
    _run(path, "export", snap.id, "--format", "classification", "--to", str(path / "out"))
    card = (path / "out" / "README.md").read_text()
    assert "## Source classes" in card and "| external | 6 |" in card and "| llm | 6 |" in card
    assert f"- {CITE}: 6 records, licence CC-BY-4.0" in card


def test_per_class_caps_block_an_export_with_their_numbers(project) -> None:
    path, cfg, store = project
    _ingest_external(path)
    _drafts(store, per_label=2)
    snap = build_snapshot(store, cfg, store.open_round())          # made under the default policy
    cfg.policy.max_external_share, cfg.policy.max_llm_share = 0.05, 0.5
    cfg.save(path)
    said = _run(path, "export", snap.id, "--format", "classification", "--to", str(path / "out"), ok=False)
    assert ("max_source_class_share: external rows are 10.0% (6 of 60), over the limit of 5% "
            "([policy] max_external_share). Keep fewer of them or add first-party rows.") in said
    assert "llm rows" not in said.split("max_source_class_share:")[1].split(". Keep")[0]   # within its cap
    assert not (path / "out").exists()
    cfg.policy.max_external_share = 0.1
    result = {r.rule: r for r in check(store, cfg, snap, "export")}["max_source_class_share"]
    assert result.passed and result.numbers["counts"]["external"] == 6 and result.numbers["limits"]["llm"] == 0.5


def test_an_external_row_without_a_licence_is_refused_when_the_policy_asks(project) -> None:
    path, cfg, store = project
    _ingest_external(path, license=None)
    cfg.policy.external_license_required = True
    with pytest.raises(PolicyError) as caught:
        build_snapshot(store, cfg, store.open_round())
    message = {f.rule: f.message for f in caught.value.failures}["external_license"]
    assert message.startswith("6 of 6 rows from public sources have no licence (e.g. ")
    assert f"from {CITE}); [policy] external_license_required refuses them" in message
    cfg.policy.external_license_required = False
    assert build_snapshot(store, cfg, store.open_round()).manifest["citations"][0]["license"] == ""


def test_a_gold_only_label_keeps_drafts_and_machine_labels_out_with_the_policys_message(project) -> None:
    path, cfg, store = project
    made = _drafts(store, per_label=3)
    edited = Record.edited(made[0], "an edited billing draft about a refund", "billing", "ann", 1)
    store.add_records([edited])
    store.add_decision(Decision(made[0].id, "edit", "ann", 1, new_record_id=edited.id))
    cfg.policy.gold_only_labels = ["billing"]
    snap = build_snapshot(store, cfg, store.open_round())
    rows = store.records(ids=snap.record_ids)
    assert not [r for r in rows if r.label == "billing" and not r.real]
    assert snap.manifest["excluded"][GOLD_ONLY] == 3                # 2 drafts + the edit of the third
    assert {"rule": "gold_only_labels", "passed": True}.items() <= {
        k: v for r in snap.manifest["policy_results"] if r["rule"] == "gold_only_labels" for k, v in r.items()}.items()
    # a training set that holds one anyway (made before the rule, or by hand) is refused with the message
    gold = store.records(origin="gold", split="train")
    failed = {r.rule: r for r in check(store, cfg, snap, "export", gold + made)}["gold_only_labels"]
    assert not failed.passed and failed.numbers["by_label"] == {"billing": 3}
    assert failed.message.startswith("3 synthetic, edited or machine-labelled row(s) of gold-only label(s) "
                                     "'billing' (3) (e.g. ")
    assert "[policy] gold_only_labels says their training rows must be real" in failed.message
    cfg.policy.gold_only_labels = ["biling"]                         # a misspelt red line is no silent gap
    typo = {r.rule: r for r in check(store, cfg, snap, "export")}["gold_only_labels"]
    assert not typo.passed and typo.message.endswith("'biling' (did you mean 'billing'?). Fix the setting.")


def test_rounds_draft_nothing_for_a_gold_only_label(project) -> None:
    from goldloop.generate import plan_requests
    from goldloop.llm import make_llm

    path, cfg, store = project
    cfg.policy.gold_only_labels = ["outage"]
    planned = plan_requests(store, cfg, make_llm(cfg.llm), store.open_round())
    assert planned and {p.label for p in planned} == {"billing", "account"}


def test_pool_rows_keep_their_source_class_through_suggestion_and_self_training(project) -> None:
    from goldloop.embed import CachedEmbedder, HashingEmbedder

    path, cfg, store = project
    pool = write_csv(path / "pool.csv", [(t, "") for t, _ in make_rows(per_label=8, seed=5)], header=("text", "note"))
    _run(path, "ingest", str(pool), "--split", "pool", "--source", "simulator")
    cfg.suggest.self_training, cfg.suggest.self_training_confidence = True, 0.5
    gold = store.records(origin="gold", split="train")
    number = store.open_round()
    suggest(store, cfg, number, 4, CachedEmbedder(HashingEmbedder(), store), gold)
    made = [r for r in store.records(origin="pool", round=number)]
    assert made and {source_class(r) for r in made} == {"simulator"}
    assert class_counts(made)["simulator"] == len(made)
    # confirmed and corrected pool labels are cited with their reviewer; an undone correction is not
    from goldloop.governance import citations

    asked = suggestions(store, number)
    store.add_decision(Decision(asked[0].id, "accept", "ann", number))
    other = next(lab for lab in ("billing", "outage", "account") if lab != asked[1].label)
    fixed = Record.corrected(asked[1], other, "bob", number)
    store.add_decision(Decision(asked[1].id, "edit", "bob", number, new_record_id=fixed.id), new_record=fixed)
    cited = {c["id"]: c for c in citations(store, cfg, asked[0].text, top=200, embedder=HashingEmbedder())}
    assert cited[asked[0].id]["reviewer"] == "ann" and cited[asked[0].id]["source_class"] == "simulator"
    assert cited[fixed.id]["reviewer"] == "bob" and cited[fixed.id]["label"] == other
    assert cited[fixed.id]["source"].startswith("pool.csv")          # the file the text came from
    traced = _run(path, "trace", fixed.id)
    assert "label corrected by bob" in traced and "label suggested by classifier:" in traced
    assert "real pool record from pool.csv" in traced and traced.count("source class: simulator") == 3
    store.add_decision(Decision(asked[1].id, "undo", "bob", number))
    assert fixed.id not in {c["id"] for c in citations(store, cfg, asked[0].text, top=200, embedder=HashingEmbedder())}
