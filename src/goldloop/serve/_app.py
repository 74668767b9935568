"""The review server: a FastAPI app over the project's store, and the page it serves.

The reviewer's hot path (next item, decide, undo) runs on the event loop: each is a few
indexed statements taking well under a millisecond, and skipping the thread-pool hop per
handler and dependency is what keeps next-item latency low with many reviewers. Slow work
(password hashing, signals, agreement, bulk repair, queue sync) runs in the thread pool.

Every write needs a login, the session's CSRF token in ``X-CSRF-Token`` and a JSON body; every
answer carries a strict Content-Security-Policy (no inline script, nothing from elsewhere).
"""

from __future__ import annotations

import threading
import time
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..config import Config
from ..errors import GoldloopError
from ..training_signals import derive
from ..store import Store, open_store, project_url
from . import _auth as auth
from ._agreement import agreement
from ._bulk import BulkSpec, apply_bulk, preview_bulk
from ._middleware import BodyLimit, SecurityHeaders
from ._queue import QueueError, claim, current_round, item_view, rank, rank_set, submit_decision, sync_queue, undo

COOKIE = "goldloop_session"
SYNC_EVERY_S = 15.0


class LoginBody(BaseModel):
    name: str = Field(max_length=64)
    password: str = Field(max_length=1024)


class NextBody(BaseModel):
    want: int = Field(default=8, ge=1, le=100)
    have: list[int] = Field(default_factory=list, max_length=500)


class RankNextBody(BaseModel):
    exclude: list[str] = Field(default_factory=list, max_length=5000)


class DecideBody(BaseModel):
    client_id: str = Field(min_length=8, max_length=64)
    queue_id: int
    action: Literal["accept", "reject", "edit", "skip", "prefer"]
    text: str | None = Field(default=None, max_length=100_000)
    label: str | None = Field(default=None, max_length=200)
    response: str | None = Field(default=None, max_length=100_000)
    winner: Literal["a", "b"] | None = None


class RankBody(BaseModel):
    client_id: str = Field(min_length=8, max_length=64)
    record_ids: list[str] = Field(min_length=2, max_length=20)


class UndoBody(BaseModel):
    client_id: str = Field(min_length=8, max_length=64)


class ReleaseBody(BaseModel):
    queue_ids: list[int] = Field(max_length=500)


class UserBody(BaseModel):
    name: str = Field(max_length=64)
    role: Literal["reviewer", "approver", "admin"]
    password: str = Field(max_length=1024)


class BulkBody(BaseModel):
    mode: Literal["pattern", "near"]
    pattern: str = Field(default="", max_length=2000)
    record_id: str = Field(default="", max_length=64)
    threshold: float = Field(default=0.8, ge=0.3, le=1.0)
    action: Literal["reject", "edit"]
    replacement: str = Field(default="", max_length=10_000)
    label: str = Field(default="", max_length=200)


class BulkApplyBody(BulkBody):
    client_id: str = Field(min_length=8, max_length=64)
    record_ids: list[str] = Field(max_length=100_000)


def create_app(project_dir: Path | str, cfg: Config | None = None, store: Store | None = None,
               sync_on_start: bool = True) -> FastAPI:
    """The review app for the project in ``project_dir`` (its goldloop.toml and store).

    >>> # uvicorn.run(create_app("tickets"), host="127.0.0.1", port=8700)
    """
    project_dir = Path(project_dir)
    cfg = cfg or Config.load(project_dir)
    store = store or open_store(project_dir, url=project_url(cfg.project.database_url))
    serve = cfg.serve
    limiter = auth.LoginLimiter(serve.login_attempts)
    last_sync: dict[int, float] = {}
    sync_lock = threading.Lock()

    def sync(round: int, force: bool = False) -> int:
        with sync_lock:
            if not force and time.monotonic() - last_sync.get(round, -1e9) < SYNC_EVERY_S:
                return 0
            added = sync_queue(store, cfg, round)
            last_sync[round] = time.monotonic()
            return added

    app = FastAPI(title="goldloop review", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(BodyLimit, limit=serve.max_body_bytes)
    app.add_middleware(SecurityHeaders)
    app.state.store = store
    app.state.cfg = cfg

    if sync_on_start:
        round_now = current_round(store)
        if round_now is not None:
            sync(round_now, force=True)

    @app.exception_handler(QueueError)
    async def _queue_error(request: Request, exc: QueueError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)        # FastAPI's own and the router's (404, 405)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}" for e in exc.errors())
        return JSONResponse({"error": f"invalid request: {problems}"}, status_code=422)

    async def session_of(request: Request) -> auth.Session:
        session = auth.find_session(store, request.cookies.get(COOKIE))
        if session is None:
            raise HTTPException(401, "log in first")
        return session

    async def writer(request: Request, session: auth.Session = Depends(session_of)) -> auth.Session:
        if not request.headers.get("content-type", "").startswith("application/json"):
            raise HTTPException(415, "send JSON (Content-Type: application/json)")
        if not auth.csrf_ok(session, request.headers.get("x-csrf-token")):
            raise HTTPException(403, "missing or wrong CSRF token; reload the page")
        return session

    def needs(needed: str, base: Any) -> Any:
        """A dependency: the session from ``base`` (a reader's or a writer's), if its role allows."""
        async def check(session: auth.Session = Depends(base)) -> auth.Session:
            if not session.user.can(needed):
                raise HTTPException(403, f"this needs the {needed} role")
            return session
        return check

    def role(needed: str) -> Any:           # a write that needs ``needed``
        return needs(needed, writer)

    def reader(needed: str) -> Any:         # a read that needs ``needed``
        return needs(needed, session_of)

    def the_round() -> int:
        number = current_round(store)
        if number is None:
            raise HTTPException(409, "the project has no round yet; run `goldloop generate` and `goldloop filter`")
        return number

    static = files("goldloop.serve").joinpath("static")
    index_html = static.joinpath("index.html").read_bytes()

    @app.get("/", include_in_schema=False)
    async def index() -> Response:
        return Response(index_html, media_type="text/html; charset=utf-8")

    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    @app.post("/api/login")
    async def login(body: LoginBody, request: Request, response: Response) -> dict[str, Any]:
        if not request.headers.get("content-type", "").startswith("application/json"):
            raise HTTPException(415, "send JSON (Content-Type: application/json)")
        address = request.client.host if request.client else "?"
        keys = (f"name:{body.name}", f"addr:{address}")
        wait = limiter.blocked(*keys)
        if wait > 0:
            raise HTTPException(429, f"too many failed logins; try again in {wait:.0f} s",
                                headers={"Retry-After": str(int(wait) + 1)})
        user = await run_in_threadpool(auth.authenticate, store, body.name, body.password)
        if user is None:
            limiter.failed(*keys)
            raise HTTPException(401, "wrong user name or password")
        token, session = auth.open_session(store, user, serve.session_hours)
        response.set_cookie(COOKIE, token, max_age=int(serve.session_hours * 3600), httponly=True, samesite="strict",
                            secure=request.url.scheme == "https", path="/")
        return _me(session)

    @app.post("/api/logout")
    async def logout(request: Request, response: Response, session: auth.Session = Depends(writer)) -> dict[str, Any]:
        auth.close_session(store, request.cookies.get(COOKIE))
        response.delete_cookie(COOKIE, path="/")
        return {"ok": True}

    def _me(session: auth.Session) -> dict[str, Any]:
        return {"name": session.user.name, "role": session.user.role, "csrf_token": session.csrf_token,
                "round": current_round(store), "prefetch": serve.prefetch, "labels": store.labels(),
                "lease_seconds": serve.lease_seconds, "overlap": serve.overlap}

    @app.get("/api/me")
    async def me(session: auth.Session = Depends(session_of)) -> dict[str, Any]:
        return _me(session)

    @app.post("/api/next")
    async def next_items(body: NextBody, session: auth.Session = Depends(writer)) -> dict[str, Any]:
        number = the_round()
        slots = claim(store, session.user.name, number, body.want, body.have, serve.lease_seconds, serve.overlap)
        if not slots and not body.have and await run_in_threadpool(sync, number):
            slots = claim(store, session.user.name, number, body.want, body.have, serve.lease_seconds, serve.overlap)
        return {"round": number, "items": [item_view(store, s) for s in slots]}

    @app.post("/api/decide")
    async def decide_item(body: DecideBody, session: auth.Session = Depends(writer)) -> dict[str, Any]:
        action = "prefer" if body.winner else body.action
        if action == "prefer" and not body.winner:
            raise HTTPException(422, "a preference needs winner 'a' or 'b'")
        return submit_decision(store, cfg, session.user.name, body.client_id, body.queue_id, action,
                               text=body.text, label=body.label, winner=body.winner, response=body.response)

    @app.post("/api/rank/next")
    async def rank_next(body: RankNextBody, session: auth.Session = Depends(writer)) -> dict[str, Any]:
        """Candidates to order on the ranking screen ([serve] rank_size of one label), leaving out
        ``exclude`` (what the page has ranked but may not have sent yet)."""
        number = the_round()
        found = await run_in_threadpool(rank_set, store, session.user.name, number, serve.rank_size,
                                        set(body.exclude))
        if found is None:
            raise HTTPException(404, f"nothing left to rank in round {number}: every candidate that passed "
                                     "the filters and was not rejected is in one of your rankings")
        return found

    @app.post("/api/rank")
    async def rank_items(body: RankBody, session: auth.Session = Depends(writer)) -> dict[str, Any]:
        """A ranking of candidates of one label, best first (reward-model rows)."""
        return rank(store, session.user.name, body.client_id, body.record_ids, the_round())

    @app.post("/api/undo")
    async def undo_last(body: UndoBody, session: auth.Session = Depends(writer)) -> dict[str, Any]:
        result = undo(store, session.user.name, body.client_id, serve.lease_seconds)
        slot = store.held_slot(session.user.name, result["queue_id"])
        return {**result, "item": item_view(store, slot) if slot else None}

    @app.post("/api/release")
    async def release_items(body: ReleaseBody, session: auth.Session = Depends(writer)) -> dict[str, Any]:
        return {"released": store.release_slots(session.user.name, body.queue_ids)}

    @app.get("/api/stats")
    async def stats(signals: bool = True, session: auth.Session = Depends(session_of)) -> dict[str, Any]:
        """The round's queue counts and, unless ``signals=false`` (the page's refresh after each
        decision), the counts of derived training signals, which re-derives them all."""
        number = current_round(store)
        # Counting a million-row queue takes a while: off the event loop, like the signals.
        out: dict[str, Any] = {"round": number, "queue": await run_in_threadpool(store.queue_counts, number,
                                                                                 session.user.name)
                               if number is not None else {"open": 0, "done": 0, "mine": 0}}
        if signals:
            derived = await run_in_threadpool(_derive, number)
            out["signals"] = {k: len(getattr(derived, k)) for k in ("sft", "kto", "dpo", "reward")}
        return out

    def _derive(number: int | None) -> Any:
        return derive(store, round=number)

    @app.get("/api/signals")
    async def signals(kind: Literal["sft", "kto", "dpo", "reward"] | None = None, limit: int = 1000,
                session: auth.Session = Depends(reader("approver"))) -> dict[str, Any]:
        number = current_round(store)
        derived = await run_in_threadpool(_derive, number)
        kinds = [kind] if kind else ["sft", "kto", "dpo", "reward"]
        return {"round": number, **{k: [_row(r) for r in getattr(derived, k)[:max(limit, 0)]] for k in kinds},
                "counts": {k: len(getattr(derived, k)) for k in ("sft", "kto", "dpo", "reward")}}

    cite_embedder: list[Any] = []               # the project's embedder, made on the first citation asked for
    cite_lock = threading.Lock()

    def _cite(text: str, top: int) -> list[dict[str, Any]]:
        from ..embed import CachedEmbedder, make_embedder
        from ..governance import citations

        with cite_lock:
            if not cite_embedder:
                cite_embedder.append(CachedEmbedder(make_embedder(cfg.embed), store))
            found = citations(store, cfg, text, top + 3, cite_embedder[0])
        return [r for r in found if r["text"] != text][:top]           # not the item itself

    @app.get("/api/cite")
    async def cite(record: str = Query(max_length=64), top: int = Query(5, ge=1, le=20),
                   session: auth.Session = Depends(session_of)) -> dict[str, Any]:
        """The human-approved examples nearest to a record's text, with their source and reviewer:
        what a decision on it can be defended by. Held-out records are never looked up or cited."""
        rec = store.get_record(record)
        if rec is None or rec.split == "heldout":
            raise HTTPException(404, "no such record")
        try:
            examples = await run_in_threadpool(_cite, rec.text, top)
        except GoldloopError as exc:                    # e.g. no gold-train records yet
            raise HTTPException(409, str(exc)) from exc
        return {"record": rec.id, "examples": examples}

    @app.get("/api/agreement")
    async def agreement_figures(session: auth.Session = Depends(reader("approver"))) -> dict[str, Any]:
        number = current_round(store)
        return {"round": number, "pairs": await run_in_threadpool(agreement, store, number) if number is not None else []}

    @app.post("/api/bulk/preview")
    async def bulk_preview(body: BulkBody, session: auth.Session = Depends(role("approver"))) -> dict[str, Any]:
        return await run_in_threadpool(preview_bulk, store, cfg, the_round(), _spec(body))

    @app.post("/api/bulk/apply")
    async def bulk_apply(body: BulkApplyBody, session: auth.Session = Depends(role("approver"))) -> dict[str, Any]:
        return await run_in_threadpool(apply_bulk, store, cfg, the_round(), _spec(body), session.user.name, body.client_id,
                                       body.record_ids)

    @app.post("/api/queue/sync")
    async def queue_sync(session: auth.Session = Depends(role("approver"))) -> dict[str, Any]:
        return {"added": await run_in_threadpool(sync, the_round(), True)}

    @app.get("/api/users")
    async def users(session: auth.Session = Depends(reader("admin"))) -> dict[str, Any]:
        return {"users": [{"name": u.name, "role": u.role, "active": active, "created_at": created}
                          for u, active, created in auth.list_users(store)]}

    @app.post("/api/users")
    async def add_user(body: UserBody, session: auth.Session = Depends(role("admin"))) -> dict[str, Any]:
        try:
            user = await run_in_threadpool(auth.add_user, store, body.name, body.role, body.password)
        except auth.AuthError as exc:
            raise HTTPException(422, str(exc)) from exc
        return {"name": user.name, "role": user.role}

    return app


def _spec(body: BulkBody) -> BulkSpec:
    return BulkSpec(mode=body.mode, pattern=body.pattern, record_id=body.record_id, threshold=body.threshold,
                    action=body.action, replacement=body.replacement, label=body.label)


def _row(row: Any) -> dict[str, Any]:
    if isinstance(row, dict):
        return row
    if hasattr(row, "_asdict"):
        return row._asdict()
    if hasattr(row, "__dataclass_fields__"):
        import dataclasses

        return dataclasses.asdict(row)
    return dict(row)


def run_server(project_dir: Path | str, host: str | None = None, port: int | None = None) -> None:
    """Serve the review app with uvicorn until interrupted."""
    import uvicorn

    cfg = Config.load(Path(project_dir))
    app = create_app(project_dir, cfg)
    uvicorn.run(app, host=host or cfg.serve.host, port=port or cfg.serve.port, log_level="warning",
                access_log=False)
