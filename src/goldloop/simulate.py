"""Simulated reviewers: for the demo, the benchmarks, and for a team that wants to know whether a
loop would pay before it spends expert time. Never the default for a real project.

Two kinds:

- :class:`LabelOracle` answers pool suggestions from labels a data set already has (accept when
  the suggestion is the known label, correct it when not, skip a text it has no label for);
- :class:`DraftJudge` judges drafts with a TF-IDF + logistic-regression classifier trained on
  labelled data the loop never sees (accept when it predicts the draft's label, else reject);
  its accuracy on data it was not trained on is measured and reported with it;
- :class:`PairJudge` judges drafted pairs (the `generate` task) by embeddings calibrated on real
  pairs; :class:`ResponseOracle` answers the responses suggested for pool prompts from the
  responses a data set already has (accept a close one, else write the known one in).

Every decision they store is marked ``simulated`` and their names start with ``simulated:``;
policies never count them as human review, and the manifest, the report and the exports say
which simulated reviewers a training set went through.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import Config
from .errors import StageError
from .ingest import read_labelled
from .records import Decision, Record, now, text_hash
from .review import EditRefused, edit_record, project_labels
from .store import Store

PREFIX = "simulated:"


@dataclass
class SimulatedReviewer:
    """A reviewer that is not a person: ``judge`` returns (action, corrected label, or a pair's
    rewritten response, or None)."""

    name: str
    description: str
    figures: dict[str, Any] = field(default_factory=dict)

    def judge(self, record: Record) -> tuple[str, str | None]:
        raise NotImplementedError

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "simulated": True, "description": self.description, **self.figures}


class LabelOracle(SimulatedReviewer):
    """Answers a suggested label from the label the data set gives the same (normalised) text."""

    def __init__(self, labels: dict[str, str], source: str) -> None:
        super().__init__(PREFIX + "label-oracle",
                         f"answers pool suggestions from the labels {source} already has ({len(labels)} texts): "
                         "accepts a correct suggestion, corrects a wrong one", {"texts": len(labels)})
        self.labels = labels

    @classmethod
    def from_file(cls, path: Path | str, cfg: Config, *, text_column: str | None = None,
                  label_column: str | None = None) -> "LabelOracle":
        rows = read_labelled(path, cfg, text_column=text_column, label_column=label_column)
        return cls({text_hash(t): y for t, y in rows}, Path(path).name)

    def judge(self, record: Record) -> tuple[str, str | None]:
        truth = self.labels.get(text_hash(record.text))
        if truth is None:
            return "skip", None
        return ("accept", None) if truth == record.label else ("edit", truth)


class DraftJudge(SimulatedReviewer):
    """Accepts a draft when a text classifier trained on real labelled data predicts its label."""

    def __init__(self, texts: Sequence[str], labels: Sequence[str], source: str, seed: int = 0,
                 check_texts: Sequence[str] = (), check_labels: Sequence[str] = ()) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline

        if len(set(labels)) < 2:
            raise StageError(f"the simulated draft judge needs labelled data with at least two labels ({source})")
        if not check_texts:                       # hold a fifth out to measure it on
            order = list(range(len(texts)))
            random.Random(seed).shuffle(order)
            cut = max(1, len(order) // 5)
            check_texts, check_labels = [texts[i] for i in order[:cut]], [labels[i] for i in order[:cut]]
            texts, labels = [texts[i] for i in order[cut:]], [labels[i] for i in order[cut:]]
        self.model = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, max_features=200_000),
                                   LogisticRegression(C=10.0, max_iter=2000, random_state=seed))
        self.model.fit(list(texts), list(labels))
        accuracy = float((self.model.predict(list(check_texts)) == list(check_labels)).mean())
        super().__init__(PREFIX + "draft-judge",
                         f"TF-IDF (1-2-grams) + logistic regression trained on {len(texts)} labelled real texts from "
                         f"{source} that the loop never trains or scores on; accuracy {accuracy:.3f} on "
                         f"{len(check_texts)} texts it was not trained on. Accepts a draft when it predicts the "
                         "draft's label, rejects it otherwise",
                         {"training_texts": len(texts), "accuracy": round(accuracy, 4), "checked_on": len(check_texts)})

    @classmethod
    def from_file(cls, path: Path | str, cfg: Config, store: Store | None = None, *, text_column: str | None = None,
                  label_column: str | None = None) -> "DraftJudge":
        """Trained on a labelled file; rows with the text of a project record (held-out or gold) are left out,
        so the judge cannot carry held-out knowledge into the training set."""
        rows = read_labelled(path, cfg, text_column=text_column, label_column=label_column)
        if store is not None:
            known = set(store.text_hashes(origin="gold"))
            rows = [(t, y) for t, y in rows if text_hash(t) not in known]
        return cls([t for t, _ in rows], [y for _, y in rows], Path(path).name, cfg.project.seed)

    def judge(self, record: Record) -> tuple[str, str | None]:
        return ("accept", None) if self.model.predict([record.text])[0] == record.label else ("reject", None)


def apply_simulated(store: Store, cfg: Config, round: int, reviewer: SimulatedReviewer,
                    records: Sequence[Record]) -> dict[str, int]:
    """Let ``reviewer`` decide ``records`` (in order); each decision is stored, marked simulated.

    A skip (a text the oracle has no label for) is stored like any skip: the item stays open.
    """
    labels = project_labels(store, cfg)
    counts = {"accept": 0, "reject": 0, "edit": 0, "skip": 0}
    for rec in records:
        action, label = reviewer.judge(rec)
        new = None
        if action == "edit":
            try:
                # a pair's edit is a new response; any other record's, a new label
                new = edit_record(rec, None, None if rec.is_pair else label, labels=labels,
                                  normalize=cfg.ingest.normalize, reviewer=reviewer.name, round=round,
                                  response=label if rec.is_pair else None)
            except EditRefused:
                action = "reject"              # a label outside the project's: the record is unusable here
        store.add_decision(Decision(rec.id, action, reviewer.name, round, new_record_id=new.id if new else None,
                                    created_at=now(), simulated=True), new_record=new)
        counts[action] += 1
    return counts


class PairJudge(SimulatedReviewer):
    """Judges drafted prompt → response pairs by how well the response fits its prompt, calibrated
    on real pairs the loop never sees.

    It embeds prompts and responses (the project's embedder) and accepts a draft when the cosine
    between its response and its own prompt reaches the ``quantile`` of that cosine over the
    real pairs, and when the response fits its own prompt better than it fits any of ``rivals``
    other real prompts drawn at random. Its accuracy is measured on further real pairs: each
    real pair should be accepted, and the same pair with its response swapped for another
    pair's should be rejected.
    """

    def __init__(self, pairs: Sequence[tuple[str, str]], embedder: Any, source: str, *, quantile: float = 0.2,
                 rivals: int = 20, seed: int = 0) -> None:
        import numpy as np

        if len(pairs) < 20:
            raise StageError(f"{source}: the simulated pair judge needs at least 20 real pairs; it has {len(pairs)}")
        rng = random.Random(seed)
        order = rng.sample(range(len(pairs)), len(pairs))
        cut = len(order) // 2
        fit, check = [pairs[i] for i in order[:cut]], [pairs[i] for i in order[cut:]]
        self.embedder, self.rivals, self.rng = embedder, rivals, random.Random(seed + 1)
        self.prompts = self._unit(embedder.embed([p for p, _ in fit]))
        answers = self._unit(embedder.embed([r for _, r in fit]))
        self.floor = float(np.quantile((self.prompts * answers).sum(axis=1), quantile))
        # accuracy: real pairs should pass, the same prompts with another pair's response should not
        shuffled = [(check[i][0], check[(i + 1) % len(check)][1]) for i in range(len(check))]
        right = sum(self._accepts(p, r) for p, r in check) + sum(not self._accepts(p, r) for p, r in shuffled)
        accuracy = round(right / (2 * len(check)), 4)
        super().__init__(PREFIX + "pair-judge",
                         f"accepts a drafted pair when its response fits its prompt (cosine of "
                         f"{getattr(embedder, 'name', 'the project embedder')} embeddings) "
                         f"at least as well as the {quantile:.0%} quantile of {len(fit)} real pairs from {source} "
                         f"that the loop never trains or scores on, and better than it fits {rivals} other real "
                         f"prompts; accuracy {accuracy:.3f} on {2 * len(check)} real and response-swapped pairs "
                         f"it was not calibrated on",
                         {"calibration_pairs": len(fit), "accuracy": accuracy, "checked_on": 2 * len(check),
                          "floor": round(self.floor, 4)})

    @classmethod
    def from_file(cls, path: Path | str, cfg: Config, embedder: Any, store: Store | None = None) -> "PairJudge":
        """Calibrated on the real pairs of a file (columns as ``[ingest]`` maps them); pairs whose prompt or
        response is a record of the project are left out, so the judge never saw what it judges."""
        from .ingest import read_rows
        from .ingest_pairs import check_pairs, pair_columns

        path = Path(path)
        columns = pair_columns(cfg)
        clean, problems = check_pairs(path.name, read_rows(path, columns), cfg, columns)
        if problems:
            raise StageError(f"{path.name}: {len(problems)} rows cannot be read: {problems[0]}")
        known = {text_hash(t) for r in (store.records() if store is not None else [])
                 for t in (r.text, r.response) if t}
        pairs = [(p.prompt, p.response) for p in clean
                 if text_hash(p.prompt) not in known and text_hash(p.response) not in known]
        return cls(pairs, embedder, path.name, seed=cfg.project.seed)

    @staticmethod
    def _unit(x: Any) -> Any:
        import numpy as np

        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    def _accepts(self, prompt: str, response: str) -> bool:
        p = self._unit(self.embedder.embed([prompt]))[0]
        a = self._unit(self.embedder.embed([response]))[0]
        own = float(p @ a)
        if own < self.floor:
            return False
        rivals = self.prompts[self.rng.sample(range(len(self.prompts)), min(self.rivals, len(self.prompts)))]
        return bool(own > float((rivals @ a).max()))

    def judge(self, record: Record) -> tuple[str, str | None]:
        return ("accept", None) if self._accepts(record.text, record.response) else ("reject", None)


class ResponseOracle(SimulatedReviewer):
    """Answers responses suggested for pool prompts (the `generate` task) from the responses a data
    set already has for the same prompts: accepts a suggestion whose chrF against the known response
    reaches ``accept_chrf``, and otherwise rewrites it to the known response (what a reviewer who
    writes that response would leave). A prompt it has no response for is skipped.

    It stands for the reviewer's own knowledge, so its edits are human-written text; the effort
    it would cost a person is kept: ``figures["edited_chars"]``, the characters of the responses it
    wrote in, beside the accepts and edits.
    """

    def __init__(self, responses: dict[str, str], source: str, accept_chrf: float = 60.0) -> None:
        super().__init__(PREFIX + "response-oracle",
                         f"answers responses suggested for pool prompts from the responses {source} already has "
                         f"({len(responses)} prompts): accepts a suggestion within chrF {accept_chrf:g} of the known "
                         "response, otherwise writes the known response in",
                         {"prompts": len(responses), "accept_chrf": accept_chrf, "accepted": 0, "edited": 0,
                          "edited_chars": 0})
        self.responses, self.accept_chrf = responses, accept_chrf

    @classmethod
    def from_file(cls, path: Path | str, cfg: Config, accept_chrf: float = 60.0) -> "ResponseOracle":
        """From a file of real pairs (columns as ``[ingest]`` maps them)."""
        from .ingest import read_rows
        from .ingest_pairs import check_pairs, pair_columns

        path = Path(path)
        columns = pair_columns(cfg)
        clean, problems = check_pairs(path.name, read_rows(path, columns), cfg, columns)
        if problems:
            raise StageError(f"{path.name}: {len(problems)} rows cannot be read: {problems[0]}")
        return cls({text_hash(p.prompt): p.response for p in clean}, path.name, accept_chrf)

    def judge(self, record: Record) -> tuple[str, str | None]:
        from sacrebleu.metrics import CHRF

        known = self.responses.get(text_hash(record.text))
        if known is None or not record.is_pair:
            return "skip", None
        if known == record.response or CHRF().sentence_score(record.response, [known]).score >= self.accept_chrf:
            self.figures["accepted"] += 1
            return "accept", None
        self.figures["edited"] += 1
        self.figures["edited_chars"] += len(known)
        return "edit", known
