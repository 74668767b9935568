"""The ``trajectory`` task: agents acting in a simulator, reviewed like any other draft, judged
against real logs.

An :class:`Episode` is a record of steps (observation, action, reward, terminated, truncated,
optional text) with the environment and seed it came from. Gold episodes are real logs
(:func:`read_episodes`, with located errors); drafts come from replaying a gold episode and
letting the policy take over, from fresh rollouts with exploration, and from the states where
the policy disagrees with the logs (:func:`draft_episodes`). Filters drop red-line steps,
out-of-bounds returns and lengths, copies and near copies, and anything close to a held-out
log (:func:`filter_episodes`). A reviewer accepts, rejects, or corrects the first bad step
(:class:`EpisodeReview`), and each answer gives behaviour-cloning rows and, for a correction, a
DPO pair at that state. A :class:`BCPolicy` trained on gold + reviewed rows is judged on
held-out real logs (agreement with the logged actions) and in the simulator (mean return,
red-line violations per episode) by :func:`score`. Episodes export as Minari datasets
(:func:`export_minari`) and as TRL conversational rows with tool calls (:func:`trl_tool_rows`).
"""

from ._agent import AgentError, LLMAgent
from ._draft import STRATEGIES, DraftPlan, draft_episodes
from ._episode import Episode, EpisodeError, Step, read_episodes
from ._export import export_minari, last_observation, trl_preference_rows, trl_tool_rows
from ._filters import FILTERS, Bounds, EpisodeVerdict, filter_episodes, kept
from ._logs import operator_logs
from ._loop import LoopSettings, TrajectoryLoopResult, TrajectoryRound, run_trajectory_loop
from ._policy import BCPolicy, Row, Scores, paired_interval, rows_of, score, starts_avoiding
from ._review import EpisodeReview, OracleReviewer, PreferencePair, preference_pairs, training_rows
from ._sim import Simulator, SimulatorError

__all__ = ["AgentError", "LLMAgent", "BCPolicy", "Bounds", "DraftPlan", "Episode", "EpisodeError", "EpisodeReview", "EpisodeVerdict", "FILTERS",
           "LoopSettings", "TrajectoryLoopResult", "TrajectoryRound", "run_trajectory_loop",
           "OracleReviewer", "PreferencePair", "Row", "STRATEGIES", "Scores", "Simulator", "SimulatorError", "Step",
           "draft_episodes", "export_minari", "filter_episodes", "last_observation", "trl_preference_rows", "trl_tool_rows", "kept", "operator_logs", "paired_interval", "preference_pairs",
           "read_episodes", "rows_of", "score", "starts_avoiding", "training_rows"]
