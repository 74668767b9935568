"""Reviewer actions become training signals: every row, its prompt, its source action, undo applied."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from goldloop.errors import StageError
from goldloop.records import Comparison, Decision, Provenance, Ranking, Record
from goldloop.training_signals import derive, instruction
from goldloop.store import GenerationRow, Store

TEXTS = [
    ("my card was charged twice for the same invoice please refund one", "billing"),
    ("the receipt shows a price that is higher than the plan i chose", "billing"),
    ("the server has been down since this morning and nothing loads", "outage"),
    ("every request times out with a connection error after a minute", "outage"),
    ("i cannot sign in because my account is locked after a reset", "account"),
    ("the subscription renewal charged my old card instead of the new one", "billing"),
]


def add_candidate(store: Store, text: str, label: str, round: int = 1, key: str | None = None,
                  with_generation: bool = True, model: str = "fake-model") -> Record:
    """One synthetic candidate with complete provenance and, by default, its generation row."""
    seeds = tuple(r.id for r in store.records(origin="gold", split="train") if r.label == label)[:3]
    key = key or f"req-{label}-{abs(hash(text)) % 10**8}"
    prov = Provenance(parents=seeds, strategy="paraphrase.v1", backend="fake", model=model,
                      params={"temperature": 0.8}, template_hash="t" * 16, request_key=key, round=round,
                      source="generate", created_at=1.0)
    rec = Record.synthetic(text, label, prov)
    if with_generation:
        row = GenerationRow(request_key=key, round=round, strategy="paraphrase.v1", label=label,
                            prompt=f"PROMPT for {label} via {key}\n1. seed one\n2.", status="ok", reply=text,
                            error="", attempts=1, tokens_in=10, tokens_out=12, seconds=0.1, backend="fake",
                            model=model)
        store.add_generation(row, [rec])
    else:
        store.add_records([rec])
    return rec


@dataclass
class Reviewed:
    store: Store
    c: list[Record]
    edited: Record
    ids: dict[str, int] = field(default_factory=dict)

    def prompt(self, rec: Record) -> str:
        return f"PROMPT for {rec.label} via {rec.provenance.request_key}\n1. seed one\n2."


def build_reviewed(store: Store) -> Reviewed:
    """Six candidates of round 1 and every kind of reviewer action on them."""
    c = [add_candidate(store, text, label) for text, label in TEXTS]
    ids: dict[str, int] = {}
    ids["accept0"] = store.add_decision(Decision(c[0].id, "accept", "ann", 1))
    ids["reject1"] = store.add_decision(Decision(c[1].id, "reject", "bob", 1))
    edited = Record.edited(c[2], "the server is down since this morning and no page loads", "outage", "ann", 1)
    ids["edit2"] = store.add_decision(Decision(c[2].id, "edit", "ann", 1, new_record_id=edited.id), new_record=edited)
    ids["skip3"] = store.add_decision(Decision(c[3].id, "skip", "bob", 1))
    store.add_decision(Decision(c[4].id, "accept", "ann", 1))
    store.add_decision(Decision(c[4].id, "undo", "ann", 1))             # c4: nothing stands
    store.add_decision(Decision(c[5].id, "accept", "bob", 1))
    store.add_decision(Decision(c[5].id, "undo", "bob", 1))
    ids["reject5"] = store.add_decision(Decision(c[5].id, "reject", "bob", 1))
    ids["cmp01"] = store.add_comparison(Comparison(c[0].id, c[1].id, "a", "ann", 1))
    store.add_comparison(Comparison(c[0].id, c[5].id, "b", "bob", 1))
    store.add_comparison(Comparison(c[5].id, c[0].id, "undo", "bob", 1))  # withdrawn, pair given in either order
    store.add_comparison(Comparison(c[3].id, c[4].id, "a", "bob", 1))
    ids["cmp34"] = store.add_comparison(Comparison(c[3].id, c[4].id, "b", "bob", 1))   # bob's later judgement
    store.add_comparison(Comparison(c[3].id, c[4].id, "undo", "cy", 1))  # cy has nothing to withdraw
    ids["rank"] = store.add_ranking(Ranking((c[0].id, c[5].id, c[1].id), "ann", 1))
    return Reviewed(store, c, edited, ids)


@pytest.fixture
def reviewed(project) -> Reviewed:
    _, _, store = project
    return build_reviewed(store)


def test_accept_and_edit_give_sft_rows_with_the_generators_exact_prompt(reviewed):
    s = derive(reviewed.store)
    c, ids = reviewed.c, reviewed.ids
    assert [(r.record_id, r.decision_id) for r in s.sft] == [(c[0].id, ids["accept0"]),
                                                            (reviewed.edited.id, ids["edit2"])]
    accept, edit = s.sft
    assert (accept.prompt, accept.completion) == (reviewed.prompt(c[0]), c[0].text)
    assert (accept.origin, accept.reviewer, accept.round, accept.prompt_source) == ("synthetic", "ann", 1, "generation")
    assert edit.completion == reviewed.edited.text and edit.origin == "edited"
    assert edit.prompt == reviewed.prompt(c[2])          # an edit is trained on its parent's prompt
    assert edit.comparison_id is None and edit.ranking_id is None


def test_kto_labels_follow_the_standing_decision_after_undo(reviewed):
    s = derive(reviewed.store)
    c, ids = reviewed.c, reviewed.ids
    assert [(r.record_id, r.label, r.decision_id) for r in s.kto] == [
        (c[0].id, True, ids["accept0"]), (c[1].id, False, ids["reject1"]), (c[5].id, False, ids["reject5"])]
    assert all(isinstance(r.label, bool) for r in s.kto)
    assert s.kto[1].completion == c[1].text and s.kto[1].prompt == reviewed.prompt(c[1])
    assert s.kto[0].record_label == "billing"
    decided = {r.record_id for r in s.sft + s.kto}
    assert c[3].id not in decided and c[4].id not in decided      # skipped; accepted then undone


def test_dpo_pairs_from_edits_and_comparisons(reviewed):
    s = derive(reviewed.store)
    c, ids = reviewed.c, reviewed.ids
    edit, cmp01, cmp34 = s.dpo
    assert (edit.chosen, edit.rejected, edit.prompt) == (reviewed.edited.text, c[2].text, reviewed.prompt(c[2]))
    assert (edit.decision_id, edit.record_id, edit.rejected_id, edit.rejected_origin) == (
        ids["edit2"], reviewed.edited.id, c[2].id, "synthetic")
    assert (cmp01.chosen, cmp01.rejected, cmp01.comparison_id) == (c[0].text, c[1].text, ids["cmp01"])
    # drafted from two different prompts: the pair gets the instruction of their shared label
    assert (cmp01.prompt, cmp01.prompt_source) == (instruction("billing"), "instruction")
    assert (cmp34.chosen, cmp34.rejected, cmp34.reviewer) == (c[4].text, c[3].text, "bob")
    assert cmp34.prompt == instruction(None)              # outage vs account: no shared label
    assert cmp34.comparison_id == ids["cmp34"] and cmp34.decision_id is None


def test_rankings_give_every_ordered_pair_as_reward_rows(reviewed):
    s = derive(reviewed.store)
    c, ids = reviewed.c, reviewed.ids
    ranked = [r for r in s.reward if r.ranking_id == ids["rank"]]
    assert [(r.record_id, r.rejected_id) for r in ranked] == [(c[0].id, c[5].id), (c[0].id, c[1].id),
                                                             (c[5].id, c[1].id)]
    assert all(r.prompt is None and r.reviewer == "ann" for r in ranked)
    assert [r.chosen for r in ranked] == [c[0].text, c[0].text, c[5].text]
    # the edit and the two standing comparisons are reward pairs too; the edit keeps its prompt
    others = [r for r in s.reward if r.ranking_id is None]
    assert [(r.decision_id, r.comparison_id) for r in others] == [(ids["edit2"], None), (None, ids["cmp01"]),
                                                                   (None, ids["cmp34"])]
    assert others[0].prompt == reviewed.prompt(c[2]) and others[1].prompt is None
    assert s.counts() == {"sft": 2, "kto": 3, "dpo": 3, "reward": 6}


def test_a_later_ranking_of_the_same_set_replaces_the_earlier_one(reviewed):
    c = reviewed.c
    newer = reviewed.store.add_ranking(Ranking((c[1].id, c[0].id, c[5].id), "ann", 1))
    ranked = [r for r in derive(reviewed.store).reward if r.ranking_id is not None]
    assert {r.ranking_id for r in ranked} == {newer}
    assert [(r.record_id, r.rejected_id) for r in ranked][0] == (c[1].id, c[0].id)


def test_instruction_mode_builds_prompts_from_the_label(reviewed):
    s = derive(reviewed.store, prompt_mode="instruction", item_name="Ticket")
    assert s.sft[0].prompt == 'Write a new ticket with the label "billing".'
    assert {r.prompt_source for r in s.sft + s.kto} == {"instruction"}
    ranked = [r for r in s.reward if r.ranking_id is not None]
    assert all(r.prompt == 'Write a new ticket with the label "billing".' for r in ranked)   # all billing


def test_a_round_selects_its_actions_only(reviewed):
    store = reviewed.store
    later = add_candidate(store, "the invoice for march never arrived in my inbox", "billing", round=2)
    d = store.add_decision(Decision(later.id, "accept", "cy", 2))
    assert [(r.record_id, r.decision_id) for r in derive(store, round=2).sft] == [(later.id, d)]
    assert derive(store, round=2).counts() == {"sft": 1, "kto": 1, "dpo": 0, "reward": 0}
    assert derive(store, round=1).counts() == {"sft": 2, "kto": 3, "dpo": 3, "reward": 6}
    assert derive(store).counts()["sft"] == 3


def test_skips_and_gold_give_nothing(project):
    _, _, store = project
    gold = store.records(origin="gold", split="train")[0]
    cand = add_candidate(store, TEXTS[0][0], TEXTS[0][1])
    store.add_decision(Decision(cand.id, "skip", "ann", 1))
    store.add_decision(Decision(gold.id, "accept", "ann", 1))
    s = derive(store)
    assert s.counts() == {"sft": 0, "kto": 0, "dpo": 0, "reward": 0}
    assert any("gold" in n for n in s.notes)


def test_a_record_without_its_generation_row_falls_back_to_the_instruction_and_says_so(project):
    _, _, store = project
    cand = add_candidate(store, TEXTS[2][0], TEXTS[2][1], with_generation=False)
    store.add_decision(Decision(cand.id, "accept", "ann", 1))
    s = derive(store)
    assert (s.sft[0].prompt, s.sft[0].prompt_source) == (instruction("outage"), "instruction")
    assert any("no stored generation prompt" in n for n in s.notes)


def test_an_action_on_a_heldout_record_is_refused(project):
    _, _, store = project
    heldout = store.records(origin="gold", split="heldout")[0]
    cand = add_candidate(store, TEXTS[0][0], TEXTS[0][1])
    store.add_comparison(Comparison(cand.id, heldout.id, "a", "ann", 1))
    with pytest.raises(StageError, match=f"held-out record {heldout.id}"):
        derive(store)


def test_unknown_prompt_mode_is_an_error(project):
    with pytest.raises(ValueError, match="prompt_mode"):
        derive(project[2], prompt_mode="chat")
