"""One redaction for every output path: no credential is ever printed, logged, recorded or sent on.

Every place that turns a URL, an address, a header or an error into text -- the CLI's error lines,
log records, ``OrchestratorError`` messages, activity failures (they live in Temporal history),
notifications, the run store's messages, metric labels -- passes that text through ``redact``.

Rules, applied in this order:

1. **Known secrets.** Every credential the process was configured with (``remember``: the Prometheus
   token and password, the Temporal API key, the Unleash token, the password and secret parameters of
   every configured URL, the notification webhook) is replaced by ``***`` wherever it appears, also in
   the escaped forms an error message may quote it in (``repr``, JSON, percent-encoding) and line by
   line when it holds a newline. Structure-based rules below cannot see a secret that is not in a
   recognisable place; this one can.
2. **URLs** (``scheme://...``): the userinfo is everything up to the *last* ``@`` of the URL, so a
   password with an unencoded ``@``, ``/``, ``?`` or ``#`` (``u:SEC@RET@PW@h``) never leaks in part,
   at the price of hiding a path or query that itself contains ``@``. Everything after the user
   name's ``:`` is masked (``u:***@h``); a user name alone is kept (it is not a secret, and a
   store's location must stay usable), unless it holds an ``@`` and so may be a password's tail.
3. **Bare addresses** (``u:PW@h:1``, as gRPC addresses are written): a word whose part before its
   last ``@`` holds a ``:`` or another ``@``, and no ``/``, is masked the same way
   (``app@sha256:...`` and ``user@host`` are not addresses with a password and stay).
4. **Secret-looking parameters** anywhere (``?token=``, ``&password=``, ``api_key=``, a DSN's
   ``password=``): any name containing token, pass, pwd, secret, key, auth, sig or credential keeps
   its name and loses its value.
5. **Header values**: ``Bearer``/``Basic``/``Digest`` credentials and the values of ``Authorization``,
   ``Cookie`` and API-key headers.

The known secrets are one process-wide, add-only set: they are the process's own configured
credentials, known when settings are read and before anything is printed, and never removed, so
nothing has to reset it. Values shorter than ``MIN_SECRET_LENGTH`` are not scrubbed literally (they
would erase ordinary words); the structural rules still hide them. Everything here is pure string
work (no I/O), so workflow code may call it too.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable
from urllib.parse import quote, quote_plus, unquote, urlsplit

MASK = "***"
MIN_SECRET_LENGTH = 4

_known: set[str] = set()
_lock = threading.Lock()

_SECRET_NAME = r"[\w.-]*(?:token|pass|pwd|secret|key|auth|sig|credential)[\w.-]*"
# A scheme starts where no scheme character precedes it, and is short: without both, every letter of a long
# word would start a new scan for "://" (quadratic time on a large log message).
_URL = re.compile(r"(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]{0,31}://[^\s'\"<>`]*")
_WORD = re.compile(r"[^\s'\"<>`]+")
_PARAM = re.compile(rf"(?i)(^|[?&;#\s,({{]|\\n)({_SECRET_NAME})=([^&;#\s'\"<>`,)}}]*)")
_SCHEME = re.compile(r"(?i)\b(bearer|basic|digest|negotiate)(\s+)[^\s'\"<>`,;]+")
_HEADER = re.compile(
    r"(?i)\b(authorization|proxy-authorization|cookie|set-cookie|x-api-key|api-key|x-auth-token)"
    r"((?>[\"']?\s*[:=]\s*[\"']?))(?!(?:bearer|basic|digest|negotiate)\s)[^'\"\n,}]+"
)


def remember(*values: str | None) -> None:
    """Add configured credentials to the known secrets (``None`` and empty values are ignored)."""
    forms: set[str] = set()
    for value in values:
        if not value:
            continue
        for form in _forms(value):
            if len(form) >= MIN_SECRET_LENGTH:
                forms.add(form)
    if forms:
        with _lock:
            _known.update(forms)


def remember_url(url: str | None) -> None:
    """Add a configured URL's password, secret query values and (for a webhook) nothing else.

    A URL whose path is itself the credential (an incoming webhook) is remembered whole with
    ``remember`` by its owner instead.
    """
    if not url:
        return
    rest = url.split("://", 1)[-1]
    if "@" in rest:
        userinfo = rest.rsplit("@", 1)[0]
        if ":" in userinfo:
            # Without a ":" the userinfo is a user name: not a secret, and often a common word.
            password = userinfo.split(":", 1)[1]
            remember(password, unquote(password))
    for match in _PARAM.finditer(url):
        remember(match.group(3), unquote(match.group(3)))


def redact(text: object, secrets: Iterable[str | None] = ()) -> str:
    """``text`` (anything; ``str()`` of it) with every credential replaced by ``***`` (see the module rules).

    ``secrets`` adds values to scrub for this call only, beside the remembered ones.
    """
    out = str(text)
    extra = {form for value in secrets if value for form in _forms(value) if len(form) >= MIN_SECRET_LENGTH}
    with _lock:
        known = _known | extra
    # Longest first, so a secret that contains another is removed whole.
    for value in sorted(known, key=len, reverse=True):
        if value in out:
            out = out.replace(value, MASK)
    out = _URL.sub(lambda m: _redact_url(m.group(0)), out)
    out = _WORD.sub(lambda m: _redact_word(m.group(0)), out)
    # A value's trailing ":" is the sentence's ("at http://h/?token=X: refused"), kept for reading.
    out = _PARAM.sub(lambda m: f"{m.group(1)}{m.group(2)}={MASK}" + (":" if m.group(3).endswith(":") else ""), out)
    out = _SCHEME.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", out)
    return _HEADER.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", out)


def redact_url(url: str) -> str:
    """A URL (or ``host:port`` address) fit to print: no userinfo, no secret query values."""
    return redact(url)


def host_of(url: str) -> str:
    """Only the host (and port) of ``url``, for places that must not even show its path."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc.rsplit("@", 1)[-1]
    except ValueError:
        return MASK
    return redact(netloc) or MASK


def _forms(value: str) -> set[str]:
    """The ways an error message may quote ``value``: as is, escaped, percent-encoded, line by line."""
    forms = {value, value.strip(), repr(value)[1:-1], ascii(value)[1:-1], json.dumps(value)[1:-1]}
    forms |= {quote(value, safe=""), quote_plus(value), quote(value)}
    if "\n" in value or "\r" in value:
        forms |= {line.strip() for line in value.splitlines()}
    return {form for form in forms if form}


def _userinfo(userinfo: str) -> str:
    """``user:***`` for a user and a password, ``***`` for an ``@`` without a ``:``, else as is."""
    if ":" in userinfo:
        return userinfo.split(":", 1)[0] + ":" + MASK
    return MASK if "@" in userinfo else userinfo


def _redact_url(url: str) -> str:
    scheme, rest = url.split("://", 1)
    if "@" in rest:
        userinfo, host = rest.rsplit("@", 1)
        rest = f"{_userinfo(userinfo)}@{host}"
    return f"{scheme}://{rest}"


def _redact_word(word: str) -> str:
    if "@" not in word or "://" in word:
        return word
    head, host = word.rsplit("@", 1)
    # Keep leading punctuation (a parenthesis, a bracket) that is not part of the address.
    lead = len(head) - len(head.lstrip("([{"))
    userinfo = head[lead:]
    if ("@" in userinfo or ":" in userinfo) and "/" not in userinfo:
        return f"{head[:lead]}{_userinfo(userinfo)}@{host}"
    return word


__all__ = ["MASK", "MIN_SECRET_LENGTH", "host_of", "redact", "redact_url", "remember", "remember_url"]
