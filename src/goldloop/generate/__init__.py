"""Generation: strategies, their templates, and the resumable runner."""

from ._runner import GenerateReport, PlannedRequest, generate, plan_requests, stored_summary
from ._strategies import (STRATEGIES, EdgeCase, Harder, Paraphrase, Prompt, Rules, Strategy, Targeted,
                          get_strategy, oneline)

__all__ = ["EdgeCase", "GenerateReport", "Harder", "Paraphrase", "PlannedRequest", "Prompt", "Rules",
           "STRATEGIES", "Strategy", "Targeted", "generate", "get_strategy", "oneline", "plan_requests",
           "stored_summary"]
