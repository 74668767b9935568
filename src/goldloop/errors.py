"""The exceptions goldloop raises, one tree so callers can catch as narrowly as they need.

    GoldloopError
    ├── ConfigError        goldloop.toml is missing, malformed or has a bad value (names the key)
    ├── IngestError        an input file or row is unusable (names file, row, field and the fix)
    ├── StoreError         the project store is missing or inconsistent
    ├── LLMError           a generation backend failed or is misconfigured
    ├── EmbedderError      an embedding backend failed or is misconfigured
    ├── StageError         a stage cannot run yet (nothing ingested, too few labels, ...)
    └── Interrupted        Ctrl-C or SIGTERM stopped a stage after it saved what it had (exit code 130)

Every message says what is wrong and what to do about it.
"""

from __future__ import annotations


class GoldloopError(Exception):
    """Base class of every error goldloop raises on purpose."""


class ConfigError(GoldloopError):
    """goldloop.toml is missing, malformed, or holds a value that is not allowed."""


class IngestError(GoldloopError):
    """An input file, or one or more of its rows, cannot be ingested."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        self.problems = list(problems or [])
        if self.problems:
            shown = self.problems[:20]
            more = len(self.problems) - len(shown)
            message = message + "\n" + "\n".join(f"  - {p}" for p in shown)
            if more:
                message += f"\n  ... and {more} more"
        super().__init__(message)


class StoreError(GoldloopError):
    """The project store is missing, locked or inconsistent."""


class LLMError(GoldloopError):
    """A generation backend failed or is misconfigured."""


class EmbedderError(GoldloopError):
    """An embedding backend failed or is misconfigured."""


class StageError(GoldloopError):
    """A stage of the loop cannot run in the project's current state."""


class Interrupted(GoldloopError):
    """Ctrl-C or SIGTERM stopped a stage; what it had finished is saved, and running it again resumes."""


def require_classify(task: str, stage: str) -> None:
    """Refuse a stage that runs the `classify` task only, for a project of another task."""
    if task != "classify":
        raise StageError(f"{stage} runs the classify task only so far; this project's [project] task is "
                         f"{task!r}. For generate projects, ingest and status work; drafting, filters, review, "
                         "training and evaluation of prompt -> response pairs are not built yet")
