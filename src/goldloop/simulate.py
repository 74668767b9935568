"""Simulated reviewers: for the demo, the benchmarks, and for a team that wants to know whether a
loop would pay before it spends expert time. Never the default for a real project.

Two kinds:

- :class:`LabelOracle` answers pool suggestions from labels a data set already has (accept when
  the suggestion is the known label, correct it when not, skip a text it has no label for);
- :class:`DraftJudge` judges drafts with a TF-IDF + logistic-regression classifier trained on
  labelled data the loop never sees (accept when it predicts the draft's label, else reject);
  its accuracy on data it was not trained on is measured and reported with it.

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
    """A reviewer that is not a person: ``judge`` returns (action, corrected label or None)."""

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
                new = edit_record(rec, None, label, labels=labels, normalize=cfg.ingest.normalize,
                                  reviewer=reviewer.name, round=round)
            except EditRefused:
                action = "reject"              # a label outside the project's: the record is unusable here
        store.add_decision(Decision(rec.id, action, reviewer.name, round, new_record_id=new.id if new else None,
                                    created_at=now(), simulated=True), new_record=new)
        counts[action] += 1
    return counts
