"""Generation: strategies, their templates, and the resumable runner."""

from ._runner import GenerateReport, PlannedRequest, generate, plan_requests, stored_summary
from ._strategies import STRATEGIES, Paraphrase, Prompt, Strategy, get_strategy, oneline

__all__ = ["GenerateReport", "Paraphrase", "PlannedRequest", "Prompt", "STRATEGIES", "Strategy",
           "generate", "get_strategy", "oneline", "plan_requests", "stored_summary"]
