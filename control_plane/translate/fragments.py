"""Joining library-serialised messages into a larger message without re-serialising them.

On the wire an embedded message field is ``key, length, bytes``, and the
encodings of a repeated field's elements may simply be concatenated. So a
route configuration of 10,000 models is one serialised header plus each
model's routes, serialised once by protobuf and kept by the translator. This
is the only wire format Switchyard writes, and it holds no knowledge of any
message: the field number comes from the descriptor.
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

_LENGTH_DELIMITED = 2
_EMBEDDED = (FieldDescriptor.TYPE_MESSAGE, FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES)


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


@dataclass(frozen=True, slots=True)
class EmbeddedField:
    """A length-delimited field of a message type, ready to wrap serialised payloads."""

    key: bytes

    @classmethod
    def of(cls, message_type: type[Message], name: str) -> EmbeddedField:
        field = message_type.DESCRIPTOR.fields_by_name[name]
        if field.type not in _EMBEDDED:
            raise TypeError(f"{message_type.__name__}.{name} is not a message, string or bytes field")
        return cls(_varint(field.number << 3 | _LENGTH_DELIMITED))

    def wrap(self, payload: bytes) -> bytes:
        """``payload`` (one serialised element) as this field; concatenate to add more elements."""
        return self.key + _varint(len(payload)) + payload


def serialized(message: Message) -> bytes:
    """The deterministic serialisation: the same message always gives the same bytes (and version)."""
    body: bytes = message.SerializeToString(deterministic=True)
    return body
