"""Portal settings: where the checkout is, who may sign in and how, where sessions are signed."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr

ENV_PREFIX = "EDGEFM_PORTAL_"


class OidcSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # The issuer; its discovery document is `<issuer>/.well-known/openid-configuration`.
    issuer: str = Field(pattern=r"^https?://")
    client_id: str = Field(min_length=1)
    client_secret: SecretStr
    scope: str = "openid profile email"
    # Shown on the sign-in button.
    label: str = "single sign-on"


class PortalSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    repo: Path
    access_file: Path
    # Local users (argon2 hashes) for demos and tests; None: OpenID Connect only.
    users_file: Path | None = None
    oidc: OidcSettings | None = None
    # Signs the session cookie; a random one per process when not given (sessions end on restart).
    session_secret: SecretStr = Field(default_factory=lambda: SecretStr(secrets.token_urlsafe(32)))
    session_max_age_s: int = Field(default=8 * 3600, ge=60)
    # Set behind TLS so cookies are never sent in clear.
    secure_cookies: bool = False
    # How often the live event stream polls the journal.
    stream_poll_s: float = Field(default=0.5, gt=0, le=10)

    @classmethod
    def from_env(cls, repo: Path, environ: Mapping[str, str] | None = None, **overrides: object) -> PortalSettings:
        """Reads EDGEFM_PORTAL_{ACCESS_FILE,USERS_FILE,SESSION_SECRET,SECURE_COOKIES} and
        EDGEFM_PORTAL_OIDC_{ISSUER,CLIENT_ID,CLIENT_SECRET,SCOPE,LABEL}; `overrides` win."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {"repo": repo, "access_file": repo / "portal" / "access.yaml"}
        for name in ("access_file", "users_file", "session_secret", "secure_cookies"):
            raw = env.get(ENV_PREFIX + name.upper())
            if raw:
                values[name] = raw
        if env.get(ENV_PREFIX + "OIDC_ISSUER"):
            oidc = {
                k: env[ENV_PREFIX + "OIDC_" + k.upper()]
                for k in OidcSettings.model_fields
                if env.get(ENV_PREFIX + "OIDC_" + k.upper())
            }
            values["oidc"] = OidcSettings.model_validate(oidc)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(values)
