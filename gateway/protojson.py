"""JSON dict ↔ proto for the HTTP API.

`parse` is the one way a request body becomes a proto: anything that is not a JSON object of the
message's fields, with values in their proto ranges, is a 400 (never a 500 from deep inside json_format).

Proto → JSON dict, the same output as json_format.MessageToDict(preserving_proto_field_name=True,
always_print_fields_with_no_presence=True), several times faster.

`json_format` walks every field through generic Python code on every call; here
each message type gets a plan (its fields, how to convert each) once, then
conversion is a loop over that plan. Well-known types (`google.protobuf.*`,
and `google.rpc.*` with its `Any` details) are handed to json_format, which
owns their special JSON forms. tests/gateway/test_protojson.py checks the two
give identical results.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable
from typing import Any, TypeVar

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.internal import type_checkers
from google.protobuf.message import Message

from gateway.errors import ApiError

M = TypeVar("M", bound=Message)


def _invalid(message: str) -> ApiError:
    return ApiError.local(400, message, "INVALID_REQUEST")


def json_object(value: Any, where: str = "the request body") -> dict[str, Any]:
    """`value` if it is a JSON object, else a 400 saying what came instead."""
    if not isinstance(value, dict):
        shown = "null" if value is None else type(value).__name__
        raise _invalid(f"invalid request body: {where} must be a JSON object, not {shown}")
    return value


def parse(data: Any, msg: M, where: str = "the request body") -> M:
    """JSON object → proto; unknown fields, wrong shapes and out-of-range values are a 400 naming them."""
    json_object(data, where)
    try:
        json_format.ParseDict(data, msg, ignore_unknown_fields=False)
    except (json_format.ParseError, TypeError, ValueError, AttributeError) as exc:
        # ParseError for most mistakes; the others from shapes json_format does not expect (e.g. a list
        # where a nested message goes in some versions).
        raise _invalid(f"invalid request body: {exc}") from None
    return msg


_DELEGATE_PREFIXES = ("google.protobuf.", "google.rpc.")
_INT64 = {FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_SINT64,
          FieldDescriptor.TYPE_FIXED64, FieldDescriptor.TYPE_SFIXED64}

Convert = Callable[[Any], Any]
# (field name, presence check needed, repeated, map, converter)
Plan = list[tuple[str, bool, bool, bool, Convert]]
_plans: dict[str, Plan] = {}


def _delegate(msg: Message) -> Any:
    return json_format.MessageToDict(msg, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)


def _double(v: float) -> Any:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    return v


def _float(v: float) -> Any:
    if math.isnan(v) or math.isinf(v):
        return _double(v)
    return type_checkers.ToShortestFloat(v)


def _identity(v: Any) -> Any:
    return v


def _converter(field: FieldDescriptor) -> Convert:
    t = field.type
    if t == FieldDescriptor.TYPE_MESSAGE:
        return message_to_dict
    if t == FieldDescriptor.TYPE_ENUM:
        values = field.enum_type.values_by_number

        def enum(v: int) -> Any:
            ev = values.get(v)
            return ev.name if ev is not None else v

        return enum
    if t in _INT64:
        return str
    if t == FieldDescriptor.TYPE_BYTES:
        return lambda v: base64.b64encode(v).decode("ascii")
    if t == FieldDescriptor.TYPE_DOUBLE:
        return _double
    if t == FieldDescriptor.TYPE_FLOAT:
        return _float
    return _identity


def _map_key(field: FieldDescriptor) -> Convert:
    if field.type == FieldDescriptor.TYPE_BOOL:
        return lambda k: "true" if k else "false"
    return str


def _plan(desc: Descriptor) -> Plan:
    plan: Plan = []
    for field in desc.fields:
        is_map = field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type.GetOptions().map_entry
        repeated = field.is_repeated
        if is_map:
            key_conv = _map_key(field.message_type.fields_by_name["key"])
            val_conv = _converter(field.message_type.fields_by_name["value"])

            def conv(m: Any, key_conv: Convert = key_conv, val_conv: Convert = val_conv) -> Any:
                return {key_conv(k): val_conv(v) for k, v in m.items()}

            plan.append((field.name, False, False, True, conv))
        else:
            presence = (not repeated) and field.has_presence
            plan.append((field.name, presence, repeated, False, _converter(field)))
    return plan


def message_to_dict(msg: Message) -> Any:
    desc = msg.DESCRIPTOR
    name = desc.full_name
    if name.startswith(_DELEGATE_PREFIXES):
        return _delegate(msg)
    plan = _plans.get(name)
    if plan is None:
        plan = _plans[name] = _plan(desc)
    out: dict[str, Any] = {}
    for fname, presence, repeated, is_map, conv in plan:
        if presence:
            if msg.HasField(fname):
                out[fname] = conv(getattr(msg, fname))
        elif repeated:
            out[fname] = [conv(v) for v in getattr(msg, fname)]
        elif is_map:
            out[fname] = conv(getattr(msg, fname))
        else:
            out[fname] = conv(getattr(msg, fname))
    return out
