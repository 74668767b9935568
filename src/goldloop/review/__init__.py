"""Human review: decisions on candidates (in the terminal; the web app is goldloop.serve), the one
rule every edit follows, and what the decisions add up to."""

from ._edit import EditRefused, check_label, edit_record, project_labels
from ._state import ReviewState, review_states
from ._suggestion import is_suggestion, suggestion_view, suggestions
from ._terminal import ReviewSummary, review_queue, run_review

__all__ = ["EditRefused", "ReviewState", "ReviewSummary", "check_label", "edit_record", "project_labels",
           "is_suggestion", "review_queue", "review_states", "run_review", "suggestion_view", "suggestions"]
