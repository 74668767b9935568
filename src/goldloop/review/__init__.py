"""Human review: decisions on candidates (terminal now), and what they add up to."""

from ._state import ReviewState, review_states
from ._terminal import ReviewSummary, review_queue, run_review

__all__ = ["ReviewState", "ReviewSummary", "review_queue", "review_states", "run_review"]
