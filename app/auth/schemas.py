"""What the sign-in endpoints read and answer."""

import uuid
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from app.core.text import Line, Name


class TokenResponse(BaseModel):
    """An OAuth2 token answer (RFC 6749 section 5.1)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "access_token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9…",
                    "token_type": "bearer",
                    "expires_in": 900,
                    "scope": "exercises:read patients:read",
                    "refresh_token": None,
                    "patient_id": None,
                }
            ]
        }
    )

    access_token: str
    token_type: str = "bearer"
    expires_in: int = Field(description="Seconds until the access token expires.")
    scope: str = Field(description="Space-separated scopes the token carries.")
    refresh_token: str | None = Field(
        default=None, description="Patient apps only: trade it at `/v1/auth/refresh`."
    )
    patient_id: uuid.UUID | None = Field(
        default=None, description="Patient apps only: whose app this is."
    )


GRANT_TYPES = ("password", "client_credentials")


class TokenForm(BaseModel):
    """The OAuth2 token request, form-encoded. As RFC 6749 asks, parameters it does not
    know are ignored rather than refused. Client credentials may come as HTTP Basic."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "grant_type": "password",
                    "username": "clinician@clinic.example",
                    "password": "correct horse battery staple",
                }
            ]
        }
    )

    # Checked by the route, not here, so that another grant type is RFC 6749's 400
    # `unsupported_grant_type` rather than a validation error.
    grant_type: Annotated[
        str,
        Field(
            max_length=64,
            json_schema_extra={"enum": list(GRANT_TYPES)},
            description="`password` (clinicians) or `client_credentials` (clinic systems); "
            "another is 400 `unsupported_grant_type`.",
        ),
    ]
    username: Annotated[Line | None, Field(max_length=254)] = None
    password: Annotated[Line | None, Field(max_length=256)] = None
    client_id: Annotated[Line | None, Field(max_length=64)] = None
    client_secret: Annotated[Line | None, Field(max_length=256)] = None
    scope: Annotated[Line | None, Field(max_length=1000)] = None


class PairRequest(BaseModel):
    """A patient app trades the access code its clinician gave for tokens."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"code": "7KQ4-M9XT", "device_name": "Ana's phone"}]},
    )

    code: Annotated[Line, Field(min_length=4, max_length=32)]
    device_name: Annotated[Name | None, Field(min_length=1, max_length=120)] = None


class RefreshRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"refresh_token": "hV1c3m…"}]},
    )

    refresh_token: Annotated[Line, Field(min_length=1, max_length=200)]


class RevokeRequest(BaseModel):
    """RFC 7009: the token to end; its whole sign-in session (device) ends with it. Sent
    form-encoded, as RFC 7009 prescribes, or as JSON."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"token": "hV1c3m…"}]},
    )

    token: Annotated[Line, Field(min_length=1, max_length=4096)]
    token_type_hint: Annotated[
        Line | None,
        Field(
            max_length=64,
            description="`access_token` or `refresh_token`; either kind is found without it.",
        ),
    ] = None
