"""Review-server accounts in SQL: users with password hashes, and sessions kept by token hash."""

from __future__ import annotations

from ..records import now
from ._audit import AuditLog
from ._review_base import SessionRow, UserRow


class AccountTables(AuditLog):
    """:class:`AccountStore` over the ``review_users`` and ``review_sessions`` tables."""

    def put_user(self, name: str, role: str, password_hash: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT INTO review_users (name, role, password_hash, active, created_at)"
                       " VALUES (?, ?, ?, 1, ?) ON CONFLICT (name) DO UPDATE SET role = excluded.role,"
                       " password_hash = excluded.password_hash, active = 1", (name, role, password_hash, now()))
            db.execute("DELETE FROM review_sessions WHERE user_name = ?", (name,))
            self.audit("user.set", {"name": name, "role": role})

    def users(self) -> list[UserRow]:
        return [UserRow(n, r, bool(a), c) for n, r, a, c in
                self.query("SELECT name, role, active, created_at FROM review_users ORDER BY name")]

    def deactivate_user(self, name: str) -> bool:
        with self.transaction() as db:
            if db.execute("UPDATE review_users SET active = 0 WHERE name = ?", (name,)).rowcount == 0:
                return False
            db.execute("DELETE FROM review_sessions WHERE user_name = ?", (name,))
            self.audit("user.deactivate", {"name": name})
        return True

    def user_credentials(self, name: str) -> tuple[str, str] | None:
        rows = self.query("SELECT role, password_hash FROM review_users WHERE name = ? AND active = 1", (name,))
        return (rows[0][0], rows[0][1]) if rows else None

    def set_password_hash(self, name: str, password_hash: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE review_users SET password_hash = ? WHERE name = ?", (password_hash, name))

    def add_session(self, token_hash: str, user_name: str, csrf_token: str, created_at: float,
                    expires_at: float) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM review_sessions WHERE expires_at < ?", (created_at,))
            db.execute("INSERT INTO review_sessions (token_hash, user_name, csrf_token, created_at, expires_at)"
                       " VALUES (?, ?, ?, ?, ?)", (token_hash, user_name, csrf_token, created_at, expires_at))

    def find_session(self, token_hash: str) -> SessionRow | None:
        rows = self.query("SELECT u.name, u.role, s.csrf_token, s.expires_at FROM review_sessions s"
                          " JOIN review_users u ON u.name = s.user_name"
                          " WHERE s.token_hash = ? AND u.active = 1", (token_hash,))
        return SessionRow(*rows[0]) if rows else None

    def delete_session(self, token_hash: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM review_sessions WHERE token_hash = ?", (token_hash,))
