"""Users, roles, password hashes, login sessions and CSRF tokens of the review server.

Roles are ordered: a ``reviewer`` reviews; an ``approver`` also sees agreement and the derived
signals and may apply bulk repairs; an ``admin`` also manages users. Passwords are hashed with
argon2id (argon2-cffi). A session is a random token in an HttpOnly, SameSite=Strict cookie;
the store keeps only its SHA-256, next to the session's CSRF token, which every write must
echo in the ``X-CSRF-Token`` header.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from ..errors import GoldloopError
from ..records import now
from ..store import Store

ROLES = ("reviewer", "approver", "admin")
_RANK = {role: i for i, role in enumerate(ROLES)}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
MIN_PASSWORD = 8

_hasher = PasswordHasher()
# Verified against when the user name is unknown, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class AuthError(GoldloopError):
    """A user could not be added or found (bad name, role or password)."""


@dataclass(frozen=True)
class User:
    name: str
    role: str

    def can(self, role: str) -> bool:
        """Whether this user holds ``role`` or a higher one."""
        return _RANK[self.role] >= _RANK[role]


@dataclass(frozen=True)
class Session:
    user: User
    csrf_token: str
    expires_at: float


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def add_user(store: Store, name: str, role: str, password: str) -> User:
    """Create a user, or set an existing user's role and password.

    >>> # add_user(store, "ann", "reviewer", "a long passphrase")
    """
    if not _NAME.match(name):
        raise AuthError(f"user name {name!r}: use 1-64 letters, digits, '.', '_', '-' or '@', starting with a "
                        "letter or digit")
    if role not in ROLES:
        raise AuthError(f"role {role!r} is not one of {', '.join(ROLES)}")
    if len(password) < MIN_PASSWORD:
        raise AuthError(f"the password for {name} is too short: use at least {MIN_PASSWORD} characters")
    store.put_user(name, role, _hasher.hash(password))      # a new password ends the user's open sessions
    return User(name, role)


def list_users(store: Store) -> list[tuple[User, bool, float]]:
    """Every user with whether they are active and when they were added."""
    return [(User(u.name, u.role), u.active, u.created_at) for u in store.users()]


def deactivate_user(store: Store, name: str) -> None:
    """Stop a user from logging in and end their sessions; their decisions stay."""
    if not store.deactivate_user(name):
        raise AuthError(f"no user named {name!r}")


class LoginLimiter:
    """At most ``attempts`` failed logins per user name and per client address in ``window`` seconds."""

    def __init__(self, attempts: int, window: float = 60.0) -> None:
        self.attempts = attempts
        self.window = window
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, at: float) -> deque[float]:
        times = self._failures.setdefault(key, deque())
        while times and times[0] <= at - self.window:
            times.popleft()
        return times

    def blocked(self, *keys: str) -> float:
        """Seconds until another attempt is allowed for these keys (0: allowed now)."""
        at = time.monotonic()
        with self._lock:
            waits = [times[0] + self.window - at for key in keys
                     if len(times := self._recent(key, at)) >= self.attempts]
        return max(waits, default=0.0)

    def failed(self, *keys: str) -> None:
        at = time.monotonic()
        with self._lock:
            for key in keys:
                self._recent(key, at).append(at)


def authenticate(store: Store, name: str, password: str) -> User | None:
    """The active user with this name and password, or None; takes as long either way."""
    found = store.user_credentials(name)
    digest = found[1] if found else _DUMMY_HASH
    try:
        _hasher.verify(digest, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    if found is None:
        return None
    if _hasher.check_needs_rehash(digest):
        store.set_password_hash(name, _hasher.hash(password))
    return User(name, found[0])


def open_session(store: Store, user: User, hours: float) -> tuple[str, Session]:
    """A new session for ``user``: (cookie token, session). Only the token's hash is stored."""
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    created = now()
    session = Session(user, csrf, created + hours * 3600)
    store.add_session(_token_hash(token), user.name, csrf, created, session.expires_at)
    return token, session


def find_session(store: Store, token: str | None) -> Session | None:
    """The live session of a cookie token, or None."""
    if not token or len(token) > 200:
        return None
    found = store.find_session(_token_hash(token))
    if found is None or found.expires_at < now():
        return None
    return Session(User(found.user_name, found.role), found.csrf_token, found.expires_at)


def close_session(store: Store, token: str | None) -> None:
    if token:
        store.delete_session(_token_hash(token))


def csrf_ok(session: Session, header: str | None) -> bool:
    """Whether a write's CSRF header matches its session's token (compared in constant time)."""
    return bool(header) and hmac.compare_digest(session.csrf_token.encode(), header.encode())
