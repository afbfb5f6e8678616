"""Reassembles client frames into messages and checks the rules between frames.

A :class:`Reader` exists only for connections that send something: a pure
subscriber, which sends nothing but pongs and a close, often never needs one.

Each :meth:`Reader.feed` parses at most the frames and data messages its caller
allows and keeps the rest buffered (:attr:`Reader.stopped`): the caller decides
how much of a client's input one turn of the event loop may spend on, so a read
full of tiny frames cannot hold the loop. A message may have at most
``max_fragments`` frames: empty continuations add nothing to its size, and
would otherwise be kept for ever.
"""

from __future__ import annotations

import sys
from typing import NamedTuple

from aurigraph_stream.errors import InvalidPayload, MessageTooBig, ProtocolError
from aurigraph_stream.wire.deflate import decompress
from aurigraph_stream.wire.frames import Opcode, parse_frame

__all__ = ["Message", "Reader"]


class Message(NamedTuple):
    """A complete message or control frame. ``data`` is str for TEXT."""

    opcode: Opcode
    data: bytes | str


class Reader:
    """Frames in, messages out, for one connection.

    After each :meth:`feed`, :attr:`frames` is how many frames it parsed and
    :attr:`stopped` whether it stopped at a limit its caller set with bytes
    left to parse (a later ``feed(b"")`` goes on from there).
    """

    __slots__ = (
        "_buf",
        "_deflate",
        "_frag",
        "_frag_op",
        "_frag_rsv1",
        "_frag_size",
        "frames",
        "max_fragments",
        "max_frame",
        "max_message",
        "stopped",
    )

    def __init__(
        self, max_frame: int, max_message: int, deflate: bool, max_fragments: int = 64
    ) -> None:
        self.max_frame = max_frame
        self.max_message = max_message
        self.max_fragments = max_fragments
        self._deflate = deflate
        self._buf = bytearray()
        self._frag: list[bytes] | None = None
        self._frag_op = Opcode.TEXT
        self._frag_rsv1 = False
        self._frag_size = 0
        self.frames = 0
        self.stopped = False

    def feed(
        self, data: bytes, max_frames: int = sys.maxsize, max_messages: int = sys.maxsize
    ) -> list[Message]:
        """Consume bytes and return the messages they complete.

        Args:
            max_frames: parse at most this many frames now.
            max_messages: stop after this many complete data messages.

        Raises:
            ProtocolError: and its subclasses; the caller closes with ``exc.code``.
        """
        buf = self._buf
        if data:
            buf += data
        out: list[Message] = []
        offset = frames = messages = 0
        stopped = False
        while True:
            if frames >= max_frames or messages >= max_messages:
                stopped = offset < len(buf)
                break
            parsed = parse_frame(
                memoryview(buf)[offset:] if offset else buf,
                self.max_frame,
                allow_rsv1=self._deflate,
            )
            if parsed is None:
                break
            frame, used = parsed
            offset += used
            frames += 1
            message = self._on_frame(frame.fin, frame.rsv1, frame.opcode, frame.payload)
            if message is not None:
                out.append(message)
                if message.opcode == Opcode.CLOSE:
                    # Nothing after a close counts (RFC 6455 5.5.1): not even bad frames.
                    buf.clear()
                    self.frames, self.stopped = frames, False
                    return out
                if message.opcode < Opcode.CLOSE:
                    messages += 1
        if offset:
            del buf[:offset]
        self.frames, self.stopped = frames, stopped
        return out

    def _on_frame(self, fin: bool, rsv1: bool, op: Opcode, payload: bytes) -> Message | None:
        if op >= Opcode.CLOSE:
            return Message(op, payload)
        if op == Opcode.CONT:
            if self._frag is None:
                raise ProtocolError("continuation frame without a message to continue")
            if rsv1:
                raise ProtocolError("RSV1 set on a continuation frame")
        elif self._frag is not None:
            raise ProtocolError("new data frame before the fragmented message ended")
        else:
            self._frag, self._frag_op, self._frag_rsv1, self._frag_size = [], op, rsv1, 0
        self._frag_size += len(payload)
        if self._frag_size > self.max_message:
            raise MessageTooBig(f"message over the {self.max_message} byte limit")
        if len(self._frag) >= self.max_fragments:
            raise MessageTooBig(f"message in more than {self.max_fragments} fragments")
        self._frag.append(payload)
        if not fin:
            return None
        data = b"".join(self._frag)
        opcode, compressed = self._frag_op, self._frag_rsv1
        self._frag = None
        if compressed:
            data = decompress(data, self.max_message)
        if opcode == Opcode.TEXT:
            try:
                return Message(opcode, data.decode())
            except UnicodeDecodeError:
                raise InvalidPayload("text message is not valid UTF-8") from None
        return Message(opcode, data)
