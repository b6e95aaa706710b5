"""Subscription filters: true/false, correlation, and a subset of Service Bus SQL.

Supported SQL: comparisons (``= <> != < <= > >=``) between a property and a literal (string, number,
TRUE/FALSE, NULL), ``IS [NOT] NULL``, ``[NOT] IN (...)``, ``[NOT] LIKE`` with ``%`` and ``_``,
``EXISTS(prop)``, ``AND``/``OR``/``NOT`` and parentheses; ``1=1``-style literal comparisons. Properties are
``sys.<Name>`` (system properties such as MessageId, CorrelationId, ContentType, Label, To, ReplyTo,
ReplyToSessionId, SessionId), ``user.<name>`` or a bare name (application properties). Arithmetic and
functions other than EXISTS are not supported and are rejected when the filter is built, so a rule never
silently matches differently than on Service Bus. Logic is three-valued as in SQL: a comparison with a
missing property is unknown, NOT keeps it unknown, and only a true result matches.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CorrelationFilter", "FalseFilter", "MessageView", "SqlFilter", "TrueFilter"]

# Config.json / .NET names of system properties -> keys of MessageView.system_properties.
SYSTEM_PROPERTY_KEYS: dict[str, str] = {
    "messageid": "message_id",
    "correlationid": "correlation_id",
    "contenttype": "content_type",
    "label": "subject",
    "subject": "subject",
    "to": "to",
    "replyto": "reply_to",
    "replytosessionid": "reply_to_session_id",
    "sessionid": "session_id",
}


@dataclass(frozen=True)
class MessageView:
    """What a filter may look at: system properties by snake_case key and application properties."""

    system_properties: Mapping[str, Any] = field(default_factory=dict)
    application_properties: Mapping[str, Any] = field(default_factory=dict)


def _text(value: Any) -> Any:
    # pyamqp hands application-property strings over as bytes; filters compare text.
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return bytes(value)
    return value


@dataclass(frozen=True)
class TrueFilter:
    """Matches every message."""

    def matches(self, message: MessageView) -> bool:
        return True


@dataclass(frozen=True)
class FalseFilter:
    """Matches nothing."""

    def matches(self, message: MessageView) -> bool:
        return False


@dataclass(frozen=True)
class CorrelationFilter:
    """Equality on the given system properties and application properties; unset fields are ignored."""

    content_type: str | None = None
    correlation_id: str | None = None
    subject: str | None = None
    message_id: str | None = None
    reply_to: str | None = None
    reply_to_session_id: str | None = None
    session_id: str | None = None
    to: str | None = None
    properties: Mapping[str, Any] = field(default_factory=dict)

    def matches(self, message: MessageView) -> bool:
        sysprops = message.system_properties
        for key in (
            "content_type",
            "correlation_id",
            "subject",
            "message_id",
            "reply_to",
            "reply_to_session_id",
            "session_id",
            "to",
        ):
            wanted = getattr(self, key)
            if wanted is not None and _text(sysprops.get(key)) != wanted:
                return False
        app = {_text(k): _text(v) for k, v in message.application_properties.items()}
        return all(name in app and app[name] == value for name, value in self.properties.items())


# ---------------------------------------------------------------------------------------------- SQL subset

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>\d+(?:\.\d+)?)|(?P<op><>|!=|<=|>=|=|<|>)|(?P<punct>[(),])"
    r"|(?P<ident>\[?[A-Za-z_][\w.]*\]?))"
)
_NULL = object()
Predicate = Callable[[MessageView], Any]


def _tokenize(text: str) -> list[tuple[str, Any]]:
    tokens: list[tuple[str, Any]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ValueError(f"unsupported SQL filter syntax at {text[pos:]!r}")
        pos = m.end()
        kind = m.lastgroup
        value = m.group(kind)  # type: ignore[arg-type]
        if kind == "str":
            tokens.append(("lit", value[1:-1].replace("''", "'")))
        elif kind == "num":
            tokens.append(("lit", float(value) if "." in value else int(value)))
        elif kind == "ident":
            word = value.strip("[]")
            upper = word.upper()
            if upper in ("AND", "OR", "NOT", "IS", "IN", "LIKE", "EXISTS"):
                tokens.append((upper, upper))
            elif upper == "TRUE":
                tokens.append(("lit", True))
            elif upper == "FALSE":
                tokens.append(("lit", False))
            elif upper == "NULL":
                tokens.append(("NULL", _NULL))
            else:
                tokens.append(("ident", word))
        else:
            tokens.append((value, value))
    tokens.append(("end", None))
    return tokens


def _property(name: str) -> Predicate:
    lowered = name.lower()
    if lowered.startswith("sys."):
        key = SYSTEM_PROPERTY_KEYS.get(lowered[4:])
        if key is None:
            raise ValueError(f"unsupported system property {name!r} in SQL filter")
        return lambda m: _text(m.system_properties.get(key))
    prop = name[5:] if lowered.startswith("user.") else name

    def get(m: MessageView) -> Any:
        for k, v in m.application_properties.items():
            if _text(k) == prop:
                return _text(v)
        return None

    return get


def _compare(op: str, left: Any, right: Any) -> bool | None:
    if left is None or right is None:
        return None  # SQL three-valued logic: unknown never matches
    try:
        if op == "=":
            return bool(left == right)
        if op in ("<>", "!="):
            return bool(left != right)
        if op == "<":
            return bool(left < right)
        if op == "<=":
            return bool(left <= right)
        if op == ">":
            return bool(left > right)
        return bool(left >= right)
    except TypeError:
        return None


# SQL three-valued logic: None is "unknown" (a missing property, a type mismatch); only True matches.


def _and(a: bool | None, b: bool | None) -> bool | None:
    if a is False or b is False:
        return False
    return None if a is None or b is None else True


def _or(a: bool | None, b: bool | None) -> bool | None:
    if a is True or b is True:
        return True
    return None if a is None or b is None else False


def _not(a: bool | None) -> bool | None:
    return None if a is None else not a


def _like(pattern: str) -> re.Pattern[str]:
    out = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.compile(out, re.DOTALL)


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.i = 0

    def peek(self) -> str:
        return self.tokens[self.i][0]

    def take(self, kind: str | None = None) -> Any:
        tok_kind, value = self.tokens[self.i]
        if kind is not None and tok_kind != kind:
            raise ValueError(f"expected {kind} in SQL filter, found {value!r}")
        self.i += 1
        return value

    def parse(self) -> Predicate:
        expr = self.expr()
        if self.peek() != "end":
            raise ValueError(f"unexpected {self.tokens[self.i][1]!r} in SQL filter")
        return expr

    def expr(self) -> Predicate:
        left = self.term()
        while self.peek() == "OR":
            self.take()
            right = self.term()
            left = (lambda a, b: lambda m: _or(a(m), b(m)))(left, right)
        return left

    def term(self) -> Predicate:
        left = self.factor()
        while self.peek() == "AND":
            self.take()
            right = self.factor()
            left = (lambda a, b: lambda m: _and(a(m), b(m)))(left, right)
        return left

    def factor(self) -> Predicate:
        kind = self.peek()
        if kind == "NOT":
            self.take()
            inner = self.factor()
            return lambda m: _not(inner(m))
        if kind == "(":
            self.take()
            inner = self.expr()
            self.take(")")
            return inner
        if kind == "EXISTS":
            self.take()
            self.take("(")
            get = _property(self.take("ident"))
            self.take(")")
            return lambda m: get(m) is not None
        bare_literal = self.peek() == "lit" and isinstance(self.tokens[self.i][1], bool)
        left = self.operand()
        kind = self.peek()
        if bare_literal and kind in ("end", "AND", "OR", ")"):
            return left  # TRUE / FALSE on their own
        if kind == "IS":
            self.take()
            negate = self.peek() == "NOT"
            if negate:
                self.take()
            self.take("NULL")
            return lambda m: (left(m) is None) != negate
        negate = False
        if kind == "NOT":
            self.take()
            negate = True
            kind = self.peek()
        if kind == "IN":
            self.take()
            self.take("(")
            values = [self.take("lit")]
            while self.peek() == ",":
                self.take()
                values.append(self.take("lit"))
            self.take(")")
            return lambda m: None if left(m) is None else ((left(m) in values) != negate)
        if kind == "LIKE":
            self.take()
            pattern = _like(self.take("lit"))
            return lambda m: (
                (bool(pattern.fullmatch(left(m))) != negate) if isinstance(left(m), str) else None
            )
        if negate:
            raise ValueError("NOT must be followed by IN or LIKE here in SQL filter")
        if kind in ("=", "<>", "!=", "<", "<=", ">", ">="):
            op = self.take()
            right = self.operand()
            return lambda m: _compare(op, left(m), right(m))
        raise ValueError(f"expected a comparison in SQL filter, found {self.tokens[self.i][1]!r}")

    def operand(self) -> Predicate:
        kind = self.peek()
        if kind == "lit":
            value = self.take()
            return lambda m: value
        if kind == "NULL":
            self.take()
            return lambda m: None
        if kind == "ident":
            return _property(self.take())
        raise ValueError(f"expected a property or literal in SQL filter, found {self.tokens[self.i][1]!r}")


@dataclass(frozen=True)
class SqlFilter:
    """A SQL-92-subset filter; construction fails on anything outside the supported subset."""

    expression: str
    _predicate: Predicate = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_predicate", _Parser(self.expression).parse())

    def matches(self, message: MessageView) -> bool:
        return self._predicate(message) is True
