"""goldloop: grow a small human gold set into a larger, better training set.

>>> import goldloop
>>> goldloop.normalize_text("  Two   words ")
'Two words'
"""

from .config import Config
from .embed import CachedEmbedder, Embedder, HashingEmbedder, MiniLMEmbedder, make_embedder
from .errors import (ConfigError, EmbedderError, GoldloopError, IngestError, Interrupted, LLMError, StageError,
                     StoreError)
from .evaluate import Evaluation, evaluate_snapshot, scores
from .filters import FILTERS, Filter, run_filters
from .generate import STRATEGIES, Strategy, generate, plan_requests
from .ingest import ingest_file
from .llm import LLM, CompletionRequest, CompletionResult, EmbeddedLLM, FakeLLM, OpenAICompatibleLLM, make_llm
from .export import export_snapshot
from .governance import PolicyError, check as check_policies, enforce as enforce_policies
from .loop import LoopResult, RoundResult, run_loop, run_round
from .records import Comparison, Decision, Provenance, Ranking, Record, Snapshot, Verdict, normalize_text
from .review import review_states, run_review
from .training_signals import Signals, derive as derive_signals
from .snapshot import build_snapshot, resolve_snapshot
from .store import PostgresStore, SQLiteStore, Store, open_store

__version__ = "0.1.0"

__all__ = [
    "CachedEmbedder", "Comparison", "CompletionRequest", "CompletionResult", "Config", "ConfigError", "Decision",
    "EmbeddedLLM", "Embedder", "EmbedderError", "Evaluation", "FILTERS", "FakeLLM", "Filter",
    "GoldloopError", "HashingEmbedder", "IngestError", "Interrupted", "LLM", "LLMError", "LoopResult", "MiniLMEmbedder",
    "OpenAICompatibleLLM", "PolicyError", "PostgresStore", "Provenance", "Ranking", "Record", "RoundResult",
    "SQLiteStore", "STRATEGIES", "Signals", "Snapshot", "StageError", "Store", "StoreError", "Strategy", "Verdict",
    "build_snapshot", "check_policies", "derive_signals", "enforce_policies", "evaluate_snapshot",
    "export_snapshot", "generate", "ingest_file", "make_embedder", "make_llm", "normalize_text", "open_store",
    "plan_requests", "resolve_snapshot", "review_states", "run_filters", "run_loop", "run_review", "run_round",
    "scores",
]
