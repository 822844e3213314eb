"""Intake's own settings: console sessions and the throttle on failed authentication.

From the environment (prefix ``DEFENSA311_``), like :class:`shared.settings.Settings`; a
test passes an instance to :func:`services.intake.http.create_app` instead.
"""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.config import load_config
from shared.settings import Settings

MIN_TOKEN_LENGTH = 24
MIN_SECRET_LENGTH = 32


class IntakeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DEFENSA311_", extra="ignore")

    # The key that signs console session cookies. Unset: a random one is generated on first
    # start and kept in the database (table web_session_keys), shared by every instance.
    session_secret: SecretStr | None = None
    # A console session ends after this long without a request …
    session_idle_minutes: int = Field(default=30, ge=1, le=24 * 60)
    # … and this long after sign-in, whatever happens.
    session_max_hours: int = Field(default=8, ge=1, le=7 * 24)
    # Mark the session cookie Secure even when the request reached us over plain HTTP
    # (TLS ends at a proxy that is not listed in DEFENSA311_TRUSTED_PROXIES).
    cookie_secure: bool = False
    # Failed authentications (console sign-in, a wrong bearer token, a wrong Open311 api_key)
    # one client may make: a burst, then a sustained rate; beyond it every attempt gets 429.
    auth_failures_burst: int = Field(default=10, ge=1)
    auth_failures_per_minute: float = Field(default=2.0, gt=0)


def startup_problems(settings: Settings, intake: IntakeSettings | None = None) -> list[str]:
    """What stops intake from starting, one Spanish line each; no secret is ever echoed."""
    intake = intake or IntakeSettings()
    # A list that does not parse is named first and alone: its parts may be tokens.
    problems: list[str] = token_problems(settings)
    short = []
    for item in settings.api_tokens.split(",") if not problems else ():
        role, sep, token = item.strip().partition("=")
        if sep and token.strip() and len(token.strip()) < MIN_TOKEN_LENGTH and _is_role(role):
            # (not a role, e.g. "token=role" written backwards: never echoed; the
            # malformed-list line below covers it)
            short.append(role.strip())
    if short:
        # The roles are named, never the tokens (nor their length).
        problems.append(
            f"DEFENSA311_API_TOKENS: {'el token' if len(short) == 1 else 'los tokens'} de "
            f"{', '.join(short)} {'tiene' if len(short) == 1 else 'tienen'} menos de "
            f"{MIN_TOKEN_LENGTH} caracteres; use tokens aleatorios más largos "
            "(ej. python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    secret = intake.session_secret
    if secret is not None and len(secret.get_secret_value()) < MIN_SECRET_LENGTH:
        problems.append(
            f"DEFENSA311_SESSION_SECRET: debe tener al menos {MIN_SECRET_LENGTH} caracteres "
            "(o no lo defina y se generará uno aleatorio)"
        )
    return problems


def _is_role(role: str) -> bool:
    from shared.auth import TokenConfigError, check_role

    try:
        check_role(role)
    except TokenConfigError:
        return False
    return True


def token_problems(settings: Settings) -> list[str]:
    """Tokens that cannot be read (the value itself is never echoed: it holds tokens)."""
    from shared.auth import TokenConfigError, TokenStore

    try:
        config = load_config(settings.config)
    except Exception:  # the configuration's own check reports it
        return []
    codes = set(config.department_codes)
    problems: list[str] = []
    try:
        TokenStore.build(settings.api_tokens, [], codes)
    except TokenConfigError:
        problems.append(
            "DEFENSA311_API_TOKENS no es válida: use rol=token separados por comas, con los "
            "roles staff, supervisor, platform311 o department:<código de un departamento "
            "de la configuración>"
        )
    try:
        TokenStore.build("", config.tokens, codes)
    except TokenConfigError:
        problems.append(
            f"DEFENSA311_CONFIG: una entrada [[tokens]] de {settings.config} tiene un rol "
            "desconocido"
        )
    return problems
