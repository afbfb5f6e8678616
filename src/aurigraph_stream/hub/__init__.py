"""The hub: fan-out of each event to every matching subscriber, encoded once."""

from aurigraph_stream.hub.fanout import Hub, Job
from aurigraph_stream.hub.frames import build_frame, control_frame, message_frame, payload_of
from aurigraph_stream.hub.governor import Governor
from aurigraph_stream.hub.members import (
    Subscriber,
    Subscription,
    Variant,
    View,
    count_frames,
    subscription_bytes,
)

__all__ = [
    "Governor",
    "Hub",
    "Job",
    "Subscriber",
    "Subscription",
    "Variant",
    "View",
    "build_frame",
    "control_frame",
    "count_frames",
    "message_frame",
    "payload_of",
    "subscription_bytes",
]
