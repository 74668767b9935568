"""Generation: strategies, their templates, and the resumable runner."""

from ._accepted import accepted_drafts
from ._pairs import (DEFAULT_PAIR_STRATEGIES, PAIR_STRATEGIES, PairResponse, PairStrategy, PairTargeted, PlannedPair,
                     draft_round_pairs, generate_pairs, plan_pair_requests, plan_second_responses, weak_spot_seeds)
from ._runner import GenerateReport, PlannedRequest, generate, plan_requests, stored_summary
from ._strategies import (STRATEGIES, EdgeCase, Feedback, Harder, LabelConditioned, Paraphrase, Prompt, Rules,
                          Strategy, Targeted, get_strategy, oneline)

__all__ = ["DEFAULT_PAIR_STRATEGIES", "EdgeCase", "Feedback", "GenerateReport", "Harder", "LabelConditioned", "PAIR_STRATEGIES", "PairResponse", "PairStrategy", "PairTargeted",
           "Paraphrase", "PlannedPair", "PlannedRequest", "Prompt", "Rules", "STRATEGIES", "Strategy", "Targeted",
           "accepted_drafts", "draft_round_pairs", "generate", "generate_pairs", "get_strategy", "oneline", "plan_pair_requests",
           "plan_requests", "plan_second_responses", "stored_summary",
           "weak_spot_seeds"]
