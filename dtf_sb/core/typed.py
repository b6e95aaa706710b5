"""Rebuilding typed values from decoded JSON, guided by the annotations of user functions.

Payloads travel as JSON, so a dataclass arrives as a dict and a datetime as a string. When an
orchestrator's or activity's input parameter (or an activity's return value, when it is called by
function) is annotated with a dataclass or ``datetime`` (also inside ``list[...]``, ``dict[str, ...]``
and ``X | None``), the value is rebuilt as that type. Anything the annotations do not describe is passed
through unchanged, and an annotation that cannot be resolved simply disables the conversion.
"""

from __future__ import annotations

import collections.abc as abc
import dataclasses
import inspect
import types
import typing
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

__all__ = ["convert", "input_hint", "return_hint"]

_NO_HINT: Any = object()
_input_hints: dict[int, Any] = {}
_return_hints: dict[int, Any] = {}
_field_hints: dict[type, dict[str, Any]] = {}


def _signature(fn: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(fn, eval_str=True)
    except Exception:  # unresolvable annotations (local names, typos): no conversion
        return None


def input_hint(fn: Callable[..., Any]) -> Any:
    """The annotation of ``fn``'s input: its second positional parameter when it takes a context first
    (orchestrators, two-argument activities), else its only one; None when absent or unresolvable."""
    key = id(fn)
    if key not in _input_hints:
        hint = None
        signature = _signature(fn)
        if signature is not None:
            params = [
                p
                for p in signature.parameters.values()
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
            ]
            if params:
                param = params[1] if len(params) >= 2 else params[0]
                if param.annotation is not inspect.Parameter.empty:
                    hint = param.annotation
        _input_hints[key] = hint
    return _input_hints[key]


def return_hint(fn: Callable[..., Any]) -> Any:
    key = id(fn)
    if key not in _return_hints:
        signature = _signature(fn)
        hint = None
        if signature is not None and signature.return_annotation is not inspect.Signature.empty:
            hint = signature.return_annotation
        _return_hints[key] = hint
    return _return_hints[key]


def _hints_of(cls: type) -> dict[str, Any]:
    hints = _field_hints.get(cls)
    if hints is None:
        try:
            hints = typing.get_type_hints(cls)
        except Exception:
            hints = {}
        _field_hints[cls] = hints
    return hints


def convert(value: Any, hint: Any) -> Any:
    """``value`` rebuilt as ``hint`` where the hint names a dataclass or datetime; else ``value``."""
    if hint is None or value is None or hint is Any:
        return value
    if isinstance(hint, type):
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            hints = _hints_of(hint)
            kwargs = {
                f.name: convert(value[f.name], hints.get(f.name))
                for f in dataclasses.fields(hint)
                if f.init and f.name in value
            }
            try:
                return hint(**kwargs)
            except TypeError:
                return value
        if hint is datetime and isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                return value
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
        return value
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (list, tuple, set, frozenset) or (origin is not None and _is_sequence(origin)):
        if isinstance(value, list) and args:
            item = args[0]
            items = [convert(v, item) for v in value]
            return tuple(items) if origin is tuple else items
        return value
    if origin is dict or (origin is not None and _is_mapping(origin)):
        if isinstance(value, dict) and len(args) == 2:
            return {k: convert(v, args[1]) for k, v in value.items()}
        return value
    if origin is typing.Union or origin is types.UnionType:
        candidates = [a for a in args if a is not type(None)]
        if len(candidates) == 1:
            return convert(value, candidates[0])
    return value


def _is_sequence(origin: Any) -> bool:
    return origin in (abc.Sequence, abc.MutableSequence, abc.Iterable, abc.Collection)


def _is_mapping(origin: Any) -> bool:
    return origin in (abc.Mapping, abc.MutableMapping)
