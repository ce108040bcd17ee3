"""Brokers: the supervisor performs the I/O the sandbox may not (fetch, fs) once policy allows."""

from supervisor.brokers.fetch import FetchBroker
from supervisor.brokers.fs import FsBroker
from supervisor.brokers.headers import build_header_rules
from supervisor.brokers.models import (
    BrokerError,
    FetchRequest,
    FetchResponse,
    FsRequest,
    FsResponse,
    FsStat,
)

__all__ = [
    "BrokerError",
    "FetchBroker",
    "FetchRequest",
    "FetchResponse",
    "FsBroker",
    "FsRequest",
    "FsResponse",
    "FsStat",
    "build_header_rules",
]
