"""The HTTP API's settings section: ``TEP_API_*``, flags of ``tep api`` on top."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, ClassVar

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from eventstore.config import SettingsBase

__all__ = ["DEFAULT_API_PORT", "ApiSettings"]

DEFAULT_API_PORT = 8700


class ApiSettings(SettingsBase):
    """How ``tep api`` listens and whom it lets in.

    Every field is the variable ``TEP_API_<FIELD>``; the flags of ``tep api`` win over them.
    """

    model_config = SettingsConfigDict(env_prefix="TEP_API_")
    title: ClassVar[str] = "API setting"

    host: str = Field("127.0.0.1", description="address to listen on. Flag: `--host`")
    port: int = Field(
        DEFAULT_API_PORT,
        ge=0,
        le=65535,
        description="port to listen on (0: any free one). Flag: `--port`",
    )
    tokens: SecretStr | None = Field(
        None,
        description="bearer tokens as JSON: `{name: {token_sha256 | token, scopes}}`, scopes "
        'from `read`, `submit`, `operate`, e.g. `{"ci": {"token_sha256": "9f86...", '
        '"scopes": ["read", "submit"]}}`; added to those of `TEP_API_TOKENS_FILE`',
    )
    tokens_file: Path | None = Field(
        None,
        description="a JSON file of bearer tokens, the same shape as `TEP_API_TOKENS`, read at "
        "start. Flag: `--tokens-file`",
    )
    max_body_bytes: int = Field(
        1024 * 1024,
        gt=0,
        description="largest request body accepted; a larger one is refused with 413 before "
        "it is read further",
    )
    cors_origins: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        description="origins a browser may call the API from (a JSON list, or comma-separated; "
        "`*` any). Default: none, CORS off",
    )
    admin_nkey: Path | None = Field(
        None,
        description="nkey seed of the admin identity, used only to change schedules (add, "
        "pause, resume, remove, trigger), which the client identity may not. Without it, "
        "schedule writes use the admin credential of a local `tep up` when no explicit identity "
        "is set, and are refused otherwise",
    )
    admin_creds: Path | None = Field(
        None, description="like `TEP_API_ADMIN_NKEY`, as a credentials file (JWT and seed)"
    )
    heartbeat_s: float = Field(
        15.0,
        gt=0,
        description="seconds between keep-alive comments on an idle event stream",
    )

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return tuple(json.loads(text))
            return tuple(part.strip() for part in text.split(",") if part.strip())
        return value
