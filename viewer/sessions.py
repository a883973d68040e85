"""The sessions a viewer keeps: one :class:`Task1.interactive.ClickSession` per open case.

One method instance (one model in memory) serves every session; its predictions are serialised
by one lock, so two people clicking at once are answered one after the other and no session sees
another's state. Sessions idle for longer than ``idle_seconds`` are closed when the store is next
used; at most ``max_sessions`` are open (the next one is refused, 429, until one closes or
expires). Session ids are random (``secrets``), not counters.
"""
from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable


class SessionError(Exception):
    """A request the store refuses; ``status`` is the HTTP status the server answers with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass
class OpenSession:
    id: str
    case_name: str
    session: Any                    # Task1.interactive.ClickSession
    has_label: bool
    opened: float = field(default_factory=time.monotonic)
    last_used: float = field(default_factory=time.monotonic)


class SessionStore:
    """Open, find, use and close sessions (see the module docstring). ``clock``: for tests."""

    def __init__(self, *, max_sessions: int = 4, idle_seconds: float = 1800.0,
                 clock: Callable[[], float] = time.monotonic):
        self.max_sessions = int(max_sessions)
        self.idle_seconds = float(idle_seconds)
        self.clock = clock
        self.model_lock = threading.Lock()   # one model: one prediction at a time
        self._lock = threading.Lock()        # the table of sessions
        self._sessions: dict[str, OpenSession] = {}

    def expire(self) -> list[str]:
        """Close the sessions idle for longer than ``idle_seconds``; their ids."""
        now = self.clock()
        with self._lock:
            old = [sid for sid, s in self._sessions.items() if now - s.last_used > self.idle_seconds]
            for sid in old:
                del self._sessions[sid]
        return old

    def reserve(self) -> None:
        """Refuse (429) when ``max_sessions`` are open, before the costly preparation."""
        self.expire()
        with self._lock:
            if len(self._sessions) >= self.max_sessions:
                raise SessionError(f"{len(self._sessions)} sessions are open, the maximum is {self.max_sessions}: "
                                   "close one (DELETE /api/sessions/{id}) or wait until one expires", 429)

    def add(self, case_name: str, session: Any, has_label: bool) -> OpenSession:
        with self._lock:
            if len(self._sessions) >= self.max_sessions:
                raise SessionError(f"the maximum of {self.max_sessions} sessions is reached", 429)
            sid = secrets.token_urlsafe(12)
            opened = OpenSession(sid, case_name, session, has_label, self.clock(), self.clock())
            self._sessions[sid] = opened
            return opened

    def get(self, sid: str) -> OpenSession:
        self.expire()
        with self._lock:
            found = self._sessions.get(sid)
            if found is None:
                raise SessionError(f"unknown session {sid!r} (closed, expired after {self.idle_seconds:g} s idle, "
                                   "or never opened)", 404)
            found.last_used = self.clock()
            return found

    def close(self, sid: str) -> None:
        with self._lock:
            if self._sessions.pop(sid, None) is None:
                raise SessionError(f"unknown session {sid!r}", 404)

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)
