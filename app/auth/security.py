"""Secrets: password hashing (Argon2), signed access tokens (JWT), codes and opaque tokens."""

import base64
import hashlib
import hmac
import secrets
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from argon2.profiles import CHEAPEST, RFC_9106_LOW_MEMORY

from app.core.columns import utcnow
from app.core.config import Settings

ISSUER = "dorsi"
ALGORITHM = "HS256"
# No 0/O, 1/I/L or U: easy to read aloud and to type on a phone.
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_LENGTH = 8

# Verified tokens kept per process, so a token presented again is not checked again.
MAX_VERIFIED_TOKENS = 4096

# Development and test without DORSI_SECRET_KEY sign with a key that lives as long as the
# process; production refuses to start without one (see Settings).
_EPHEMERAL_KEY = secrets.token_urlsafe(48)


class Secrets:
    """Everything that hashes, signs or checks a secret, configured once per app."""

    def __init__(self, settings: Settings) -> None:
        key = settings.secret_key.get_secret_value() if settings.secret_key else _EPHEMERAL_KEY
        self._key = key
        self._hmac_key = key.encode()
        # Its own key, so a successor is never the digest of anything stored.
        self._successor_key = hmac.new(
            self._hmac_key, b"dorsi refresh token successor", hashlib.sha256
        ).digest()
        profile = CHEAPEST if settings.password_hashing == "fast" else RFC_9106_LOW_MEMORY
        self._hasher = PasswordHasher.from_parameters(profile)
        self.access_ttl = timedelta(minutes=settings.access_token_minutes)
        # Verifying against this keeps an unknown account as slow as a wrong password.
        self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(16))
        self._verified: dict[str, dict[str, Any]] = {}

    def hash_password(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify_password(self, stored_hash: str | None, password: str) -> bool:
        try:
            return self._hasher.verify(stored_hash or self._dummy_hash, password) and bool(
                stored_hash
            )
        except (VerificationError, InvalidHashError):
            return False

    def digest(self, value: str) -> str:
        """A keyed digest for looking up codes and opaque tokens without storing them."""
        return hmac.new(self._hmac_key, value.encode(), hashlib.sha256).hexdigest()

    def successor_token(self, refresh_token: str) -> str:
        """The refresh token that replaces ``refresh_token`` when it is used.

        Derived, not drawn: the same token presented again within the reuse window is
        answered with the same successor, which is not stored anywhere (only its digest
        is). Without the key, nobody can derive it, even from a stolen predecessor.
        """
        mac = hmac.new(self._successor_key, refresh_token.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def access_token(self, claims: dict[str, Any], now: datetime | None = None) -> str:
        issued = now or utcnow()
        payload = {
            **claims,
            "iss": ISSUER,
            "iat": issued,
            "exp": issued + self.access_ttl,
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(payload, self._key, algorithm=ALGORITHM)

    def read_access_token(self, token: str) -> dict[str, Any] | None:
        """The token's claims if we signed it and it has not expired, else None.

        A token verified before is only checked for expiry: its signature, issuer and
        claims cannot have changed. The claims are shared; callers must not change them.
        """
        known = self._verified.get(token)
        if known is not None:
            if known["exp"] > time.time():
                return known
            self._verified.pop(token, None)
            return None
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                options={"require": ["exp", "iat", "sub", "sid", "kind", "cid"]},
            )
        except jwt.PyJWTError:
            return None
        if len(self._verified) >= MAX_VERIFIED_TOKENS:
            self._verified.clear()
        self._verified[token] = claims
        return claims


def new_access_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def normalize_access_code(code: str) -> str:
    return code.strip().upper().replace("-", "").replace(" ", "")


def new_opaque_token() -> str:
    return secrets.token_urlsafe(32)
