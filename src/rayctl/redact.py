"""Keep cloud credentials out of everything rayctl prints or stores.

`redact(text)` masks, wherever they appear in a string:

- AWS access key ids (`AKIA...`/`ASIA...`, 20 characters) and secret keys / session
  tokens written as `aws_secret_access_key = ...`, `AWS_SESSION_TOKEN=...` or in JSON;
- GCP service-account private keys (PEM blocks), `private_key_id` values and OAuth
  access tokens (`ya29.`...), `Authorization: Bearer ...` headers;
- the *values* of credential-like environment variables of this process
  (`*SECRET*`, `*TOKEN*`, `*PASSWORD*`, `*API_KEY*`, `*ACCESS_KEY*`, `*CREDENTIAL*`,
  ...), so a key that leaks into an exception message or a log line by value is
  caught even when it has no recognisable shape.

rayctl runs every SkyPilot/boto3/google error message, every log line it writes, and
every ledger event detail of the cloud target through this function.
"""

from __future__ import annotations

import os
import re

MASK = "***REDACTED***"
# A given secret value (`extra=`) shorter than this is not masked: masking "a" or "1234"
# everywhere would wreck every log line and hide nothing worth hiding.
MIN_SECRET_LEN = 6

# A credential-like variable name: one of its `_`-separated words is one of these
# (HF_TOKEN, OPENAI_API_KEY, AWS_SECRET_ACCESS_KEY, DB_PASSWORD, DB_PASS, GITHUB_PAT; not
# TOKENIZERS_PARALLELISM), or a word ends in one of _SECRET_SUFFIXES (PGPASSWORD, APITOKEN,
# OPENAIKEY). A value holding `scheme://user:password@` makes any variable a secret.
_SECRET_WORDS = {"SECRET", "SECRETS", "TOKEN", "TOKENS", "PASSWORD", "PASSWD", "PASS", "PWD", "PASSPHRASE",
                 "CREDENTIAL", "CREDENTIALS", "KEY", "APIKEY", "PRIVATEKEY", "ACCESSKEY", "SECRETKEY", "AUTHTOKEN",
                 "PAT"}
_SECRET_SUFFIXES = ("PASSWORD", "PASSWD", "TOKEN", "SECRET", "APIKEY", "PWD")
_NOT_SECRET_WORDS = {"PWD", "OLDPWD"}  # the shell's working directory, not a password

_PATTERNS: list[tuple[re.Pattern, str]] = [
    # PEM private keys (GCP service-account JSON, SSH keys), possibly with escaped newlines.
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S),
     f"-----BEGIN PRIVATE KEY-----{MASK}-----END PRIVATE KEY-----"),
    # AWS access key ids (long-term AKIA, temporary ASIA, ...).
    (re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}\b"), MASK),
    # key = value / key: value / "key": "value" for well-known credential keys.
    (re.compile(r"""(?ix)
        (["']?(?:aws_secret_access_key|aws_session_token|aws_security_token|secret_access_key|
            session_token|private_key_id|private_key|client_secret|refresh_token|access_token|
            api_key|apikey|password|secret)["']?\s*[:=]\s*)
        (["']?)([^\s"',}]+)"""), rf"\1\2{MASK}"),
    # OAuth2 access tokens from Google.
    (re.compile(r"\bya29\.[0-9A-Za-z_\-.]+"), MASK),
    # HTTP authorization headers.
    (re.compile(r"(?i)(authorization\s*[:=]\s*(?:bearer|basic|token)\s+)[^\s'\"]+"), rf"\1{MASK}"),
]


_NOT_SECRET = {"RAY_AUTH_MODE", "SSH_AUTH_SOCK", "GOOGLE_APPLICATION_CREDENTIALS", "AWS_SHARED_CREDENTIALS_FILE"}


def _env_secrets() -> list[str]:
    vals = []
    for k, v in os.environ.items():
        if (v and len(v) >= 8 and is_secret_name(k) and k not in _NOT_SECRET
                and not v.startswith(("/", "~", "."))):  # file paths are not secrets
            vals.append(v)
    return sorted(set(vals), key=len, reverse=True)


def secret_values(env: dict) -> tuple[str, ...]:
    """The values of the secret entries (`is_secret`) of an env mapping such as workload.env, for `redact(extra=)`."""
    vals = {str(v) for k, v in (env or {}).items() if v is not None and is_secret(str(k), v)}
    return tuple(sorted((v for v in vals if len(v) >= MIN_SECRET_LEN), key=len, reverse=True))


def redact(text, extra: tuple[str, ...] = ()) -> str:
    """`text` with every credential-looking substring replaced by ***REDACTED***, and every
    value in `extra` (a run's workload.env secrets, `secret_values`) of MIN_SECRET_LEN or more characters."""
    if text is None:
        return ""
    s = text if isinstance(text, str) else str(text)
    for value in sorted({v for v in extra if v and len(v) >= MIN_SECRET_LEN}, key=len, reverse=True):
        if value in s:
            s = s.replace(value, MASK)
    for value in _env_secrets():
        if value in s:
            s = s.replace(value, MASK)
    for pat, repl in _PATTERNS:
        s = pat.sub(repl, s)
    return s


def redact_obj(obj):
    """Redact every string inside a JSON-like structure (dict keys are kept)."""
    if isinstance(obj, str):
        return redact(obj)
    if isinstance(obj, dict):
        return {k: redact_obj(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact_obj(v) for v in obj]
    return obj


_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]*@")


def redact_url(text) -> str:
    """`text` with the credentials of every `scheme://user:pw@host` in it masked: `scheme://***@host`."""
    return _URL_CREDENTIALS.sub(r"\1***@", "" if text is None else str(text))


def is_secret_name(name: str) -> bool:
    """Whether an environment variable name looks like it holds a credential."""
    up = name.upper()
    if up in _NOT_SECRET_WORDS:
        return False
    words = [w for w in re.split(r"[_\-.]+", up) if w]
    return any(w in _SECRET_WORDS or (len(w) > 4 and w.endswith(_SECRET_SUFFIXES)) for w in words)


def is_secret(name: str, value) -> bool:
    """A secret env entry: a credential-like name, or a value with credentials in a URL."""
    return is_secret_name(name) or bool(_URL_CREDENTIALS.search("" if value is None else str(value)))
