"""goldloop: grow a small human gold set into a larger, better training set.

>>> import goldloop
>>> goldloop.normalize_text("  Two   words ")
'Two words'
"""

from .config import Config
from .embed import CachedEmbedder, Embedder, HashingEmbedder, MiniLMEmbedder, make_embedder
from .errors import (ConfigError, EmbedderError, GoldloopError, IngestError, LLMError, StageError,
                     StoreError)
from .evaluate import Evaluation, evaluate_snapshot, scores
from .filters import FILTERS, Filter, run_filters
from .generate import STRATEGIES, Strategy, generate, plan_requests
from .ingest import ingest_file
from .llm import LLM, CompletionRequest, CompletionResult, EmbeddedLLM, FakeLLM, OpenAICompatibleLLM, make_llm
from .loop import RoundResult, run_round
from .records import Decision, Provenance, Record, Snapshot, Verdict, normalize_text
from .review import review_states, run_review
from .snapshot import build_snapshot
from .store import SQLiteStore, Store, open_store

__version__ = "0.1.0"

__all__ = [
    "CachedEmbedder", "CompletionRequest", "CompletionResult", "Config", "ConfigError", "Decision",
    "EmbeddedLLM", "Embedder", "EmbedderError", "Evaluation", "FILTERS", "FakeLLM", "Filter",
    "GoldloopError", "HashingEmbedder", "IngestError", "LLM", "LLMError", "MiniLMEmbedder",
    "OpenAICompatibleLLM", "Provenance", "Record", "RoundResult", "SQLiteStore", "STRATEGIES",
    "Snapshot", "StageError", "Store", "StoreError", "Strategy", "Verdict", "build_snapshot",
    "evaluate_snapshot", "generate", "ingest_file", "make_embedder", "make_llm", "normalize_text",
    "open_store", "plan_requests", "review_states", "run_filters", "run_review", "run_round", "scores",
]
