"""The hub: fan-out of each event to every matching subscriber, encoded once."""

from aurigraph_stream.hub.fanout import Hub
from aurigraph_stream.hub.frames import build_frame, control_frame, message_frame, payload_of
from aurigraph_stream.hub.members import Subscriber, Subscription, Variant, View, count_frames

__all__ = [
    "Hub",
    "Subscriber",
    "Subscription",
    "Variant",
    "View",
    "build_frame",
    "control_frame",
    "count_frames",
    "message_frame",
    "payload_of",
]
