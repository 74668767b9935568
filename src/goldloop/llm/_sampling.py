"""Sampling controls beyond temperature and top_p: which ``[llm]`` values a request carries.

Each control has a neutral value: the one that leaves sampling as the endpoint does it
without the field. Only controls set to something else are sent, so an endpoint that knows
none of them (OpenAI's own API refuses ``repeat_penalty`` and the DRY fields) still works once
they are all neutral, and a request with no controls is byte for byte what goldloop sent
before they existed. The names are llama.cpp server's. Two are on by default,
``repeat_penalty`` 1.1 and ``dry_multiplier`` 0.8, because together they keep the embedded
model's drafts out of repetition loops; such an endpoint therefore needs both set neutral.

The four DRY ("don't repeat yourself") settings act together: ``dry_base``,
``dry_allowed_length`` and ``dry_penalty_last_n`` only shape a penalty that
``dry_multiplier`` switches on, so they are sent with a non-zero ``dry_multiplier`` and never
without one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..config import LLMConfig

Control = float | int

NEUTRAL_CONTROLS: dict[str, Control] = {
    "repeat_penalty": 1.0, "presence_penalty": 0.0, "frequency_penalty": 0.0, "dry_multiplier": 0.0,
    "min_p": 0.0, "top_k": 0, "typical_p": 1.0,
}
DRY_SHAPE = ("dry_base", "dry_allowed_length", "dry_penalty_last_n")
CONTROL_NAMES: tuple[str, ...] = ("repeat_penalty", "presence_penalty", "frequency_penalty", "dry_multiplier",
                                  *DRY_SHAPE, "min_p", "top_k", "typical_p")


def sampling_controls(llm_cfg: "LLMConfig") -> dict[str, Control]:
    """The controls a request should carry: every one whose value is not neutral, in
    :data:`CONTROL_NAMES` order; the DRY shape settings only while ``dry_multiplier`` is on.

    >>> from goldloop.config import LLMConfig
    >>> sampling_controls(LLMConfig())
    {'repeat_penalty': 1.1, 'dry_multiplier': 0.8, 'dry_base': 1.75, 'dry_allowed_length': 2, 'dry_penalty_last_n': 256}
    >>> sampling_controls(LLMConfig(dry_multiplier=0.0, dry_base=3.0, top_k=40))
    {'repeat_penalty': 1.1, 'top_k': 40}
    >>> sampling_controls(LLMConfig(repeat_penalty=1.0, dry_multiplier=0.0))
    {}
    """
    dry_on = llm_cfg.dry_multiplier != NEUTRAL_CONTROLS["dry_multiplier"]
    out: dict[str, Control] = {}
    for name in CONTROL_NAMES:
        value = getattr(llm_cfg, name)
        if name in DRY_SHAPE:
            if dry_on:
                out[name] = value
        elif value != NEUTRAL_CONTROLS[name]:
            out[name] = value
    return out


def refused_control(controls: Mapping[str, Control], reply: str) -> str | None:
    """The first control of ``controls`` that an endpoint's error reply names, as a whole word
    ("Unrecognized request argument supplied: repeat_penalty"), or None.

    >>> refused_control({"repeat_penalty": 1.1, "top_k": 40}, "Unrecognized request argument supplied: top_k")
    'top_k'
    >>> refused_control({"min_p": 0.1}, "field min_pp is unknown") is None
    True
    """
    for name in controls:
        if re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", reply):
            return name
    return None


def how_to_stop_sending(name: str) -> str:
    """What to write in goldloop.toml so that requests no longer carry control ``name``."""
    if name in DRY_SHAPE:
        return (f"set [llm] dry_multiplier = 0 in goldloop.toml (DRY off) to stop sending the dry_ settings, "
                f"or give [llm] {name} a value the endpoint accepts")
    return f"set [llm] {name} = {NEUTRAL_CONTROLS[name]!r} (its neutral value) in goldloop.toml to stop sending it"


def refusal_message(name: str, value: Control, status: int, reply: str) -> str:
    """The error of a request whose control ``name`` the endpoint refused: the field, the
    config key it comes from, and how to stop sending it; then the endpoint's own words."""
    return (f"the endpoint refused the request field {name!r} (sent because [llm] {name} = {value!r}); "
            f"{how_to_stop_sending(name)}. It answered HTTP {status}: {reply}")


def controls_hint(controls: Mapping[str, Control]) -> str:
    """A note for an error reply that names no control, when the request carried some."""
    sent = ", ".join(f"{name} = {value!r}" for name, value in controls.items())
    return (f"the request also carried sampling controls from [llm] ({sent}); if the endpoint does not "
            "accept one, set it to its neutral value in goldloop.toml")
