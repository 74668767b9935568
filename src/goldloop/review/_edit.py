"""One rule for an edit, wherever a reviewer makes it: the terminal, the web page or a bulk repair.

An edit never changes a record: it makes a new one (origin ``edited``) whose parent is the
original. A new label on a pool suggestion's unchanged text is a correction: the new record is
still real (origin ``pool``), and so is a new response to a pool prompt (the `generate` task);
a changed text or prompt makes it an ``edited`` row like any other. Its text is normalised like gold text; its label must be one of the project's labels
(so a typo never becomes a new class in the next snapshot); an empty text or an edit that
changes nothing is refused, with what to do instead.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..config import Config
from ..errors import GoldloopError
from ..records import Record, did_you_mean, normalize_text, pair_normalize_mode
from ..store import Store


class EditRefused(GoldloopError):
    """An edit that cannot be stored; ``reason`` is ``empty``, ``label`` or ``unchanged``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def project_labels(store: Store, cfg: Config) -> list[str]:
    """The labels an edit may use: ``[project] labels`` when set, else the gold data's labels."""
    return list(cfg.project.labels) or store.labels()


def check_label(label: str, labels: Sequence[str]) -> None:
    """Refuse a label outside ``labels`` (none: any label), naming a known one it looks like.

    >>> check_label("Billing", ["billing"])
    Traceback (most recent call last):
    goldloop.review._edit.EditRefused: label 'Billing' is not one of the project's labels (did you mean 'billing'?): billing
    """
    if labels and label not in labels:
        match = did_you_mean(label, list(labels))
        hint = f" (did you mean {match!r}?)" if match is not None else ""
        raise EditRefused("label", f"label {label!r} is not one of the project's labels{hint}: "
                                   f"{', '.join(labels)}")


def edit_record(original: Record, text: str | None, label: str | None, *, labels: Sequence[str],
                normalize: str, reviewer: str, round: int, response: str | None = None) -> Record:
    """The edited copy of ``original``; ``None`` (or blank) for ``text`` or ``label`` keeps the original's.
    A prompt → response pair (the `generate` task) takes ``text`` as its prompt and ``response``
    (``None``: unchanged), and has no label; both sides keep their line breaks.

    >>> gold = Record.gold("my card was charged twice", "billing", source="tickets.csv line 2")
    >>> edit_record(gold, None, "outage", labels=["billing", "outage"], normalize="whitespace",
    ...             reviewer="ann", round=1).label
    'outage'
    """
    if original.is_pair:
        return _edit_pair(original, text, response, normalize=normalize, reviewer=reviewer, round=round)
    new_text = original.text if text is None else normalize_text(text, normalize)
    if not new_text:
        raise EditRefused("empty", "an edit needs text; reject the item instead")
    new_label = (label or "").strip() or original.label
    check_label(new_label, labels)
    if new_text == original.text and new_label == original.label:
        raise EditRefused("unchanged", "the edit changes nothing; accept the item instead")
    if original.origin == "pool" and new_text == original.text:
        # a corrected label on real text is still a real row; changed text is no longer real
        return Record.corrected(original, new_label, reviewer, round)
    return Record.edited(original, new_text, new_label, reviewer, round)


def _edit_pair(original: Record, prompt: str | None, response: str | None, *, normalize: str, reviewer: str,
               round: int) -> Record:
    mode = pair_normalize_mode(normalize)
    new_prompt = original.text if prompt is None else normalize_text(prompt, mode)
    new_response = original.response if response is None else normalize_text(response, mode)
    if not new_prompt or not new_response:
        raise EditRefused("empty", "an edited pair needs a prompt and a response; reject the item instead")
    if new_prompt == original.text and new_response == original.response:
        raise EditRefused("unchanged", "the edit changes nothing; accept the item instead")
    if original.origin == "pool" and new_prompt == original.text:
        # a reviewer's response to a real prompt is a real row; a changed prompt is no longer real
        return Record.corrected_pair(original, new_response, reviewer, round)
    return Record.edited_pair(original, new_prompt, new_response, reviewer, round)
