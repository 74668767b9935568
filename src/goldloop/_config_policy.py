"""The `[policy]` section of goldloop.toml: synthetic-data governance as code (see
:mod:`goldloop.governance`). Re-exported by :mod:`goldloop.config`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._config_fields import setting as _f


@dataclass
class PolicyConfig:
    use_case: str = _f("", "Name of the use case these rules govern (default: [project] name). Sign-offs are "
                           "given for a use case.")
    max_synthetic_share: float = _f(0.8, "Largest share of a training snapshot that may be synthetic or edited "
                                         "rows (1.0: no limit).", minimum=0.0, maximum=1.0)
    review_required: str = _f("none", "Human review of synthetic rows before training: `none`, `all` (every "
                                      "synthetic row accepted or edited by a reviewer) or `sampled` (at least "
                                      "review_sample_rate of them).", choices=("none", "all", "sampled"))
    review_sample_rate: float = _f(0.1, "Share of synthetic rows a reviewer must have accepted or edited when "
                                        "review_required = \"sampled\".", minimum=0.0, maximum=1.0)
    signoff_required: bool = _f(False, "Whether an approver must sign a snapshot off for this use case before it "
                                       "is exported or used by `goldloop train` (for regulated use cases).")
    min_gold_per_label: int = _f(1, "Fewest real gold rows each label must have in a training snapshot.",
                                 minimum=0)
    gold_only_labels: list[str] = _f([], "Labels whose training rows must be real (e.g. red-line decisions): a "
                                         "snapshot leaves out drafts, edits and self-training rows of them, and "
                                         "a training set that has one is refused. Rounds draft none for them.")
    max_llm_share: float = _f(1.0, "Largest share of a training snapshot drafted by a language model (or a "
                                   "reviewer's edit of such a draft); 1.0: no limit.", minimum=0.0, maximum=1.0)
    max_simulator_share: float = _f(1.0, "Largest share of a training snapshot ingested with --source simulator; "
                                         "1.0: no limit.", minimum=0.0, maximum=1.0)
    max_external_share: float = _f(1.0, "Largest share of a training snapshot ingested with --source external "
                                        "(public sources); 1.0: no limit.", minimum=0.0, maximum=1.0)
    external_license_required: bool = _f(False, "Refuse a training set with a row from a public source that was "
                                                "ingested without --license.")
