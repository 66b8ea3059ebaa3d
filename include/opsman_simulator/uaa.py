"""A minimal UAA token endpoint and token verifier (reference §1).

Tokens are JWT-shaped (``header.payload.signature``, base64url) and HMAC-SHA256 signed with a
per-state-dir secret (``<state-dir>/token-secret``), so they survive a simulator restart like real
UAA JWTs do.  A token is valid while ``now < exp`` and it was issued after the last revocation
(``revoke_tokens`` control).  Clients must treat them as opaque.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from .catalog import INVALID_TOKEN_BODY
from .config import ApiError, Config
from .persistence import atomic_write
from .profiles import ROLE_SCOPES

if TYPE_CHECKING:
    from .state import Store

# ASSUMPTION: the reference marks UAA error bodies UNVERIFIED; this is the usual UAA shape.
BAD_CREDENTIALS = {"error": "unauthorized", "error_description": "Bad credentials"}

CLIENT_SCOPE = "opsman.admin"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def load_secret(state_dir: Path) -> bytes:
    path = Path(state_dir) / "token-secret"
    if path.exists():
        return bytes.fromhex(path.read_text().strip())
    secret = secrets.token_bytes(32)
    atomic_write(path, secret.hex().encode(), mode=0o600)
    return secret


class UAA:
    def __init__(self, config: Config, store: Store):
        self.config = config
        self.store = store
        self.secret = load_secret(config.state_dir)

    # ---------------------------------------------------------------------------------------
    def _sign(self, payload: dict[str, Any]) -> str:
        header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "opsman-simulator"}).encode())
        body = _b64(json.dumps(payload, separators=(",", ":")).encode())
        sig = hmac.new(self.secret, f"{header}.{body}".encode(), hashlib.sha256).digest()
        return f"{header}.{body}.{_b64(sig)}"

    def verify(self, token: str, now: float | None = None) -> dict[str, Any] | None:
        now = self.store.now() if now is None else now
        try:
            header, body, sig = token.split(".")
            want = hmac.new(self.secret, f"{header}.{body}".encode(), hashlib.sha256).digest()
            if not hmac.compare_digest(want, _unb64(sig)):
                return None
            payload = json.loads(_unb64(body))
        except Exception:
            return None
        if not isinstance(payload, dict):
            return None
        if now >= float(payload.get("exp_f", 0)):
            return None
        if float(payload.get("iat_f", 0)) <= float(self.store.data.get("revoked_before", 0.0)):
            return None
        return payload

    def authenticate_header(self, authorization: str | None) -> dict[str, Any]:
        """Validate ``Authorization: Bearer <token>``; raise the documented 401 otherwise."""
        if not authorization:
            # ASSUMPTION: a missing token gets the same 401 body as an invalid one.
            raise ApiError(401, INVALID_TOKEN_BODY)
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, INVALID_TOKEN_BODY)
        payload = self.verify(token.strip())
        if payload is None:
            raise ApiError(401, INVALID_TOKEN_BODY)
        return payload

    # ---------------------------------------------------------------------------------------
    @staticmethod
    def _basic(authorization: str | None) -> tuple[str, str] | None:
        if not authorization:
            return None
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except Exception:
            return None
        cid, sep, csecret = decoded.partition(":")
        if not sep:
            return None
        # oauth2's AuthStyleInHeader url-escapes id and secret.
        return unquote(cid), unquote(csecret)

    def _password_user(self, username: str, password: str) -> tuple[str, str] | None:
        """(name, role) of the user these credentials belong to, or None."""
        users = [(self.config.username, self.config.password, self.config.role), *self.config.extra_users]
        found = None
        for name, secret, role in users:
            # Compare every entry, so the answer time does not tell which names exist.
            if hmac.compare_digest(username, name) & hmac.compare_digest(password, secret):
                found = found or (name, role)
        return found

    def token(
        self, authorization: str | None, form: dict[str, str], now: float | None = None
    ) -> dict[str, Any]:
        now = self.store.now() if now is None else now
        grant = form.get("grant_type")
        basic = self._basic(authorization)
        if grant == "password":
            # om: Basic "opsman:" + client_id=opsman in the form.  Also accepted: no Basic header and
            # client_id=opsman in the form (public client, as uaac does it).
            if basic is not None:
                cid, csecret = basic
            else:
                cid, csecret = form.get("client_id", ""), form.get("client_secret", "")
            if cid != "opsman" or csecret != "":
                raise ApiError(401, BAD_CREDENTIALS)
            user = self._password_user(form.get("username", ""), form.get("password", ""))
            if user is None:
                raise ApiError(401, BAD_CREDENTIALS)
            subject = {"user_name": user[0], "client_id": "opsman", "grant_type": "password"}
            scope = " ".join(ROLE_SCOPES[user[1]])
        elif grant == "client_credentials":
            if basic is not None:
                cid, csecret = basic
            else:  # AuthStyleInParams
                cid, csecret = form.get("client_id", ""), form.get("client_secret", "")
            if (
                self.config.client_id is None
                or self.config.client_secret is None
                or not hmac.compare_digest(cid, self.config.client_id)
                or not hmac.compare_digest(csecret, self.config.client_secret)
            ):
                raise ApiError(401, BAD_CREDENTIALS)
            subject = {"user_name": cid, "client_id": cid, "grant_type": "client_credentials"}
            scope = CLIENT_SCOPE if self.config.role == "admin" else ROLE_SCOPES[self.config.role][0]
        else:
            raise ApiError(
                400,
                {"error": "unsupported_grant_type", "error_description": f"Unsupported grant type: {grant}"},
            )
        ttl = self.store.token_ttl()
        jti = secrets.token_hex(16)
        payload = dict(
            subject,
            jti=jti,
            iat=int(now),
            exp=int(math.ceil(now + ttl)),
            iat_f=now,
            exp_f=now + ttl,
            scope=scope.split(),
            iss="https://127.0.0.1/uaa/oauth/token",
            nonce=os.urandom(4).hex(),
        )
        return {
            "access_token": self._sign(payload),
            "token_type": "bearer",
            # ASSUMPTION: expires_in is an integer >= 1 (om treats 0 as "never expires").
            "expires_in": max(1, int(ttl)),
            "scope": scope,
            "jti": jti,
        }
