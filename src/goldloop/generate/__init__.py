"""Generation: strategies, their templates, and the resumable runner."""

from ._accepted import accepted_drafts
from ._runner import GenerateReport, PlannedRequest, generate, plan_requests, stored_summary
from ._strategies import (STRATEGIES, EdgeCase, Feedback, Harder, LabelConditioned, Paraphrase, Prompt, Rules,
                          Strategy, Targeted, get_strategy, oneline)

__all__ = ["EdgeCase", "Feedback", "GenerateReport", "Harder", "LabelConditioned", "Paraphrase", "PlannedRequest",
           "Prompt", "Rules", "STRATEGIES", "Strategy", "Targeted", "accepted_drafts", "generate", "get_strategy",
           "oneline", "plan_requests", "stored_summary"]
