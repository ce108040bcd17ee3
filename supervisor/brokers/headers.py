"""Header injection for brokered ``fetch``: rules, their parsing, and OAuth tokens.

Rules come from ``--fetch-header`` strings and ``--fetch-header-config`` JSON
files (command-line rules first, file rules appended, as the seed documents).
A rule matches a request by host (exact, or ``*.example.com``, which also
matches the apex ``example.com``; case-insensitive) and optionally by method,
and adds headers the request does not already have: headers set by the
JavaScript code always win, compared case-insensitively; among rules, the
first to add a header wins.

Secrets (static values, client secrets, tokens) never appear in an error
message, a log record or a ``repr``. A token endpoint is the operator's own
configuration: it is contacted directly, without a policy decision.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import httpx

from supervisor.brokers.models import BrokerError
from supervisor.errors import ConfigError

__all__ = [
    "DEFAULT_REFRESH_BUFFER_S",
    "FORBIDDEN_REQUEST_HEADERS",
    "HeaderRule",
    "OAuthHeaderRule",
    "StaticHeaderRule",
    "build_header_rules",
    "check_request_header",
    "host_matches",
    "load_header_config",
    "parse_header_rule",
]

logger = logging.getLogger(__name__)

DEFAULT_REFRESH_BUFFER_S: Final = 30.0

# Set by the HTTP client from the request itself; the Fetch standard calls
# most of these "forbidden request-headers". Neither user code nor a rule may
# set them: a Host header differing from the URL's host would let a request
# reach a virtual host the policy never saw.
FORBIDDEN_REQUEST_HEADERS: Final = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "upgrade",
        "te",
        "trailer",
        "expect",
        "proxy-connection",
    }
)

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Any C0 control but horizontal tab, and DEL: CR, LF and NUL split or end a header.
_BAD_VALUE_CHAR = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_HOST_PATTERN = re.compile(r"(\*\.)?[a-z0-9_.:-]+")
_CLI_KEYS: Final = (
    "host",
    "header",
    "value",
    "token_url",
    "client_id",
    "client_secret",
    "scope",
    "refresh_buffer_secs",
    "methods",
)
_OAUTH_ONLY_KEYS: Final = (
    "token_url",
    "client_id",
    "client_secret",
    "scope",
    "refresh_buffer_secs",
)
_JSON_RULE_KEYS: Final = frozenset({"host", "methods", "headers", "auth"})
_JSON_AUTH_KEYS: Final = frozenset(
    {"type", "header", "token_url", "client_id", "client_secret", "scope", "refresh_buffer_secs"}
)


def check_request_header(name: str, value: str) -> None:
    """Refuse a header name that is not an HTTP token or a value with CR, LF, NUL or controls.

    Raises :class:`BrokerError` (``EINVAL``); the value is never quoted.
    """
    if not _TOKEN.fullmatch(name):
        raise BrokerError(
            "EINVAL",
            "fetch refused a request header whose name is not a valid HTTP token "
            "(names may not contain CR, LF, NUL, spaces or separators)",
        )
    if _BAD_VALUE_CHAR.search(value):
        raise BrokerError(
            "EINVAL",
            f"fetch refused the value of request header {name!r}: "
            "it contains CR, LF, NUL or another control character",
        )


def host_matches(pattern: str, host: str) -> bool:
    """Whether a rule's host ``pattern`` (exact or ``*.suffix``) matches ``host``.

    ``*.example.com`` matches ``example.com`` itself and any name under it;
    both sides compare case-insensitively.
    """
    pattern = pattern.lower()
    host = host.lower()
    if pattern.startswith("*."):
        apex = pattern[2:]
        return host == apex or host.endswith("." + apex)
    return host == pattern


@dataclass(frozen=True, repr=False)
class StaticHeaderRule:
    """Inject fixed ``headers`` into requests for ``host`` (and ``methods``, if any)."""

    source: str
    host: str
    methods: frozenset[str]
    headers: tuple[tuple[str, str], ...]

    def matches(self, host: str, method: str) -> bool:
        """Whether this rule applies to a request for ``host`` with ``method``."""
        return (not self.methods or method.upper() in self.methods) and host_matches(
            self.host, host
        )

    def __repr__(self) -> str:
        names = ", ".join(name for name, _ in self.headers)
        return (
            f"StaticHeaderRule(source={self.source!r}, host={self.host!r}, "
            f"methods={sorted(self.methods)!r}, headers=[{names}: <redacted>])"
        )


@dataclass(frozen=True, repr=False)
class OAuthHeaderRule:
    """Inject ``<token_type> <access_token>`` from an OAuth client-credentials grant."""

    source: str
    host: str
    methods: frozenset[str]
    header: str
    token_url: str
    client_id: str
    client_secret: str
    scope: str | None = None
    refresh_buffer_s: float = DEFAULT_REFRESH_BUFFER_S

    def matches(self, host: str, method: str) -> bool:
        """Whether this rule applies to a request for ``host`` with ``method``."""
        return (not self.methods or method.upper() in self.methods) and host_matches(
            self.host, host
        )

    def __repr__(self) -> str:
        return (
            f"OAuthHeaderRule(source={self.source!r}, host={self.host!r}, "
            f"methods={sorted(self.methods)!r}, header={self.header!r}, "
            f"token_url={_without_query(self.token_url)!r}, client_id={self.client_id!r}, "
            f"client_secret=<redacted>, scope={self.scope!r}, "
            f"refresh_buffer_s={self.refresh_buffer_s!r})"
        )


HeaderRule = StaticHeaderRule | OAuthHeaderRule


# -- parsing -------------------------------------------------------------------------------


def parse_header_rule(text: str, *, source: str = "--fetch-header") -> HeaderRule:
    """Parse one ``--fetch-header`` rule: ``key=value`` pairs separated by commas.

    Values cannot contain commas here (a JSON config file can hold any value).
    """
    fields: dict[str, str] = {}
    for position, part in enumerate(text.split(","), start=1):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep:
            raise ConfigError(
                f"{source}: part {position} is not key=value "
                "(values cannot contain ',' on the command line; use --fetch-header-config)"
            )
        if key not in _CLI_KEYS:
            # The key is not quoted: a stray comma in a secret would put part of it here.
            raise ConfigError(
                f"{source}: part {position} has an unknown key "
                f"(expected {', '.join(_CLI_KEYS)}; values cannot contain ',')"
            )
        if key in fields:
            raise ConfigError(f"{source}: key {key!r} is given twice")
        fields[key] = value.strip()

    host = _host_pattern(fields.get("host"), source)
    methods = _methods(fields["methods"].split(";") if "methods" in fields else [], source)
    header = _header_name(fields.get("header"), source)
    if "value" in fields:
        extra = [key for key in _OAUTH_ONLY_KEYS if key in fields]
        if extra:
            raise ConfigError(
                f"{source}: a static rule (value=) cannot also have {', '.join(extra)}"
            )
        value = _header_value(fields["value"], header, source)
        return StaticHeaderRule(source, host, methods, ((header, value),))
    missing = [key for key in ("token_url", "client_id", "client_secret") if not fields.get(key)]
    if missing:
        raise ConfigError(
            f"{source}: needs value= (static) or token_url=, client_id= and client_secret= "
            f"(OAuth); missing {', '.join(missing)}"
        )
    buffer_text = fields.get("refresh_buffer_secs")
    try:
        buffer: object = float(buffer_text) if buffer_text is not None else None
    except ValueError:
        buffer = buffer_text
    return _oauth_rule(
        source,
        host,
        methods,
        header=header,
        token_url=fields["token_url"],
        client_id=fields["client_id"],
        client_secret=fields["client_secret"],
        scope=fields.get("scope"),
        refresh_buffer=buffer,
    )


def load_header_config(path: str | Path) -> list[HeaderRule]:
    """Read a ``--fetch-header-config`` file: a JSON list of rules, each static or OAuth."""
    where = f"--fetch-header-config {path}"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read the file: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: the file is not UTF-8") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        # exc.msg never quotes the document, so no secret is echoed.
        raise ConfigError(
            f"{where}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    if not isinstance(document, list):
        raise ConfigError(f"{where}: expected a JSON list of rules")
    return [
        _json_rule(item, f"{where} rule #{index}") for index, item in enumerate(document, start=1)
    ]


def build_header_rules(
    flags: Sequence[str] = (), config_paths: Sequence[str | Path] = ()
) -> tuple[HeaderRule, ...]:
    """All header rules: ``--fetch-header`` flags first, then each config file's rules."""
    rules: list[HeaderRule] = [
        parse_header_rule(text, source=f"--fetch-header #{index}")
        for index, text in enumerate(flags, start=1)
    ]
    for path in config_paths:
        rules.extend(load_header_config(path))
    return tuple(rules)


def _json_rule(item: object, source: str) -> HeaderRule:
    if not isinstance(item, dict):
        raise ConfigError(f"{source}: expected a JSON object")
    unknown = sorted(set(item) - _JSON_RULE_KEYS)
    if unknown:
        raise ConfigError(f"{source}: unknown keys {', '.join(map(repr, unknown))}")
    host = _host_pattern(item.get("host"), source)
    raw_methods = item.get("methods", [])
    if not isinstance(raw_methods, list):
        raise ConfigError(f"{source}: 'methods' must be a list of strings")
    methods = _methods(raw_methods, source)
    if ("headers" in item) == ("auth" in item):
        raise ConfigError(f"{source}: needs exactly one of 'headers' (static) or 'auth' (OAuth)")
    if "headers" in item:
        return StaticHeaderRule(source, host, methods, _static_headers(item["headers"], source))
    auth = item["auth"]
    if not isinstance(auth, dict):
        raise ConfigError(f"{source}: 'auth' must be an object")
    unknown = sorted(set(auth) - _JSON_AUTH_KEYS)
    if unknown:
        raise ConfigError(f"{source}: unknown keys in 'auth': {', '.join(map(repr, unknown))}")
    if auth.get("type", "oauth_client_credentials") != "oauth_client_credentials":
        raise ConfigError(f"{source}: auth type must be 'oauth_client_credentials'")
    strings = {}
    for key in ("header", "token_url", "client_id", "client_secret", "scope"):
        value = auth.get(key)
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{source}: auth {key!r} must be a string")
        strings[key] = value
    for key in ("token_url", "client_id", "client_secret"):
        if not (strings[key] or "").strip():
            raise ConfigError(f"{source}: auth needs a non-empty {key!r}")
    return _oauth_rule(
        source,
        host,
        methods,
        header=_header_name(strings["header"], source),
        token_url=str(strings["token_url"]).strip(),
        client_id=str(strings["client_id"]).strip(),
        client_secret=str(strings["client_secret"]).strip(),
        scope=strings["scope"],
        refresh_buffer=auth.get("refresh_buffer_secs"),
    )


def _static_headers(raw: object, source: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{source}: 'headers' must be a non-empty object of name: value")
    seen: set[str] = set()
    headers = []
    for name, value in raw.items():
        checked = _header_name(name, source)
        if checked.lower() in seen:
            raise ConfigError(f"{source}: header {checked!r} is given twice")
        seen.add(checked.lower())
        if not isinstance(value, str):
            raise ConfigError(f"{source}: the value of header {checked!r} must be a string")
        headers.append((checked, _header_value(value, checked, source)))
    return tuple(headers)


def _oauth_rule(
    source: str,
    host: str,
    methods: frozenset[str],
    *,
    header: str,
    token_url: str,
    client_id: str,
    client_secret: str,
    scope: str | None,
    refresh_buffer: object,
) -> OAuthHeaderRule:
    try:
        url = httpx.URL(token_url)
    except httpx.InvalidURL:
        url = None
    if url is None or url.scheme not in ("http", "https") or not url.host:
        raise ConfigError(f"{source}: token_url is not an http(s) URL")
    if refresh_buffer is None:
        buffer_s = DEFAULT_REFRESH_BUFFER_S
    elif isinstance(refresh_buffer, int | float) and not isinstance(refresh_buffer, bool):
        buffer_s = float(refresh_buffer)
    else:
        raise ConfigError(f"{source}: refresh_buffer_secs must be a number of seconds")
    if not (math.isfinite(buffer_s) and buffer_s >= 0):
        raise ConfigError(f"{source}: refresh_buffer_secs must be a finite, non-negative number")
    if _BAD_VALUE_CHAR.search(client_id) or _BAD_VALUE_CHAR.search(client_secret):
        raise ConfigError(f"{source}: client_id or client_secret contains a control character")
    scope = scope.strip() if scope else None
    return OAuthHeaderRule(
        source,
        host,
        methods,
        header=header,
        token_url=token_url,
        client_id=client_id,
        client_secret=client_secret,
        scope=scope or None,
        refresh_buffer_s=buffer_s,
    )


def _host_pattern(raw: object, source: str) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise ConfigError(f"{source}: needs a non-empty host")
    host = raw.strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host.isascii():
        raise ConfigError(f"{source}: host {raw!r} must be ASCII (use the xn-- form of the name)")
    if not _HOST_PATTERN.fullmatch(host) or host in ("*.", ".") or "*" in host[1:]:
        raise ConfigError(
            f"{source}: host {raw!r} must be a host name or '*.' followed by a domain"
        )
    return host


def _methods(raw: Iterable[object], source: str) -> frozenset[str]:
    methods = set()
    for method in raw:
        if not isinstance(method, str):
            raise ConfigError(f"{source}: methods must be strings")
        name = method.strip().upper()
        if not name:
            continue
        if not _TOKEN.fullmatch(name):
            raise ConfigError(f"{source}: {method!r} is not an HTTP method")
        methods.add(name)
    return frozenset(methods)


def _header_name(raw: object, source: str) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise ConfigError(f"{source}: needs a non-empty header name")
    name = raw.strip()
    if not _TOKEN.fullmatch(name):
        raise ConfigError(f"{source}: header name {name!r} is not a valid HTTP header name")
    if name.lower() in FORBIDDEN_REQUEST_HEADERS:
        raise ConfigError(f"{source}: header {name!r} is set by the HTTP client, not by rules")
    return name


def _header_value(raw: str, name: str, source: str) -> str:
    value = raw.strip()
    if not value:
        raise ConfigError(f"{source}: the value of header {name!r} is empty")
    if _BAD_VALUE_CHAR.search(value):
        raise ConfigError(
            f"{source}: the value of header {name!r} contains CR, LF, NUL or a control character"
        )
    return value


def _without_query(url: str) -> str:
    return url.split("?", 1)[0].split("#", 1)[0]
