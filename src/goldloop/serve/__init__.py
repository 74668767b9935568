"""The review web app: keyboard-first triage in the browser, where every action is training signal.

``goldloop serve`` runs :func:`run_server`; :func:`create_app` builds the FastAPI app for tests
and embedding. Users and roles live in the project's store (:func:`add_user`, :func:`list_users`).
"""

from ._agreement import agreement, cohen_kappa
from ._app import create_app, run_server
from ._auth import ROLES, AuthError, User, add_user, authenticate, deactivate_user, list_users
from ._bulk import BulkSpec, apply_bulk, preview_bulk
from ._queue import QueueError, claim, submit_decision, sync_queue, undo

__all__ = ["ROLES", "AuthError", "BulkSpec", "QueueError", "User", "add_user", "agreement", "apply_bulk",
           "authenticate", "claim", "cohen_kappa", "create_app", "deactivate_user", "list_users", "preview_bulk", "run_server",
           "submit_decision", "sync_queue", "undo"]
