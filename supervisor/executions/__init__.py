"""Executions: validation, queueing, running in the sandbox, recording."""

from supervisor.executions.engine import Engine, utc_now
from supervisor.executions.output import OutputSink
from supervisor.executions.requests import RunRequest, build_run_request

__all__ = ["Engine", "OutputSink", "RunRequest", "build_run_request", "utc_now"]
