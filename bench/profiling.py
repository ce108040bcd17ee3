"""Profilers of the engine throughput window: CPU sampling (SIGPROF) and cProfile (wall)."""

from __future__ import annotations

import cProfile
import os
import pstats
import re
import signal
from pathlib import Path
from types import FrameType
from typing import Any

from bench.stats import fmt_ms

# Frames of the benchmark itself (every module of this package) are left out of the report.
_BENCH_DIR = os.path.dirname(os.path.abspath(__file__))


class Profiler:
    """Profiles the event-loop thread between ``start`` and ``stop``."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def report(self, executions: int, cpu_ms_per_exec: float | None) -> str:
        raise NotImplementedError


_Key = tuple[str, int, str]  # filename, first line, function name


def _where(key: _Key) -> str:
    filename, line, name = key
    filename = re.sub(r"^.*/(site-packages|lib/python3\.\d+)/", "", filename)
    filename = filename.replace(str(Path.cwd()) + "/", "")
    return f"{name} ({filename}:{line})" if line else name


def _top_lines(rows: list[tuple[_Key, float, float]], n: int, top: int, unit: str) -> list[str]:
    """``rows`` of (key, value, count): the ``top`` largest values, per execution."""
    out: list[str] = []
    for key, value, count in sorted(rows, key=lambda r: r[1], reverse=True)[:top]:
        out.append(f"  {1000 * value / n:8.3f} ms {count / n:7.2f}{unit}  {_where(key)}")
    return out


class SamplingProfiler(Profiler):
    """Samples the main thread's stack every ``interval_s`` of process CPU time.

    ``ITIMER_PROF`` counts user and system time of the whole process, so kernel
    work done in a syscall (fork/exec, cgroupfs writes) lands on its caller.
    Low overhead, unlike cProfile with a CPU clock; statistical, of course, and
    coarse: the kernel fires the timer on scheduler ticks.
    """

    def __init__(self, interval_s: float = 0.001) -> None:
        self.interval_s = interval_s
        self.stacks: dict[tuple[_Key, ...], int] = {}
        self._previous: Any = None

    def _on_signal(self, _signum: int, frame: FrameType | None) -> None:
        stack: list[_Key] = []
        while frame is not None:
            code = frame.f_code
            stack.append((code.co_filename, code.co_firstlineno, code.co_name))
            frame = frame.f_back
        key = tuple(stack)
        self.stacks[key] = self.stacks.get(key, 0) + 1

    def start(self) -> None:
        self._previous = signal.signal(signal.SIGPROF, self._on_signal)
        signal.setitimer(signal.ITIMER_PROF, self.interval_s, self.interval_s)

    def stop(self) -> None:
        signal.setitimer(signal.ITIMER_PROF, 0, 0)
        signal.signal(signal.SIGPROF, signal.SIG_IGN)

    def report(self, executions: int, cpu_ms_per_exec: float | None, top: int = 25) -> str:
        n = max(1, executions)
        samples = sum(self.stacks.values())
        # The timer only fires on scheduler ticks, however short the interval: weigh
        # each sample by the CPU time rusage measured over the same window.
        ms_per_sample = (cpu_ms_per_exec or 0.0) * n / max(1, samples)
        own: dict[_Key, int] = {}
        inclusive: dict[_Key, int] = {}
        for stack, count in self.stacks.items():
            if stack:
                own[stack[0]] = own.get(stack[0], 0) + count
            for key in set(stack):
                inclusive[key] = inclusive.get(key, 0) + count

        def rows(counts: dict[_Key, int]) -> list[str]:
            ranked = sorted(counts.items(), key=lambda kv: kv[1], reverse=True)
            ranked = [
                (k, c)
                for k, c in ranked
                if k[2] not in ("_run_once", "run_forever", "run_until_complete", "run", "_run")
                and os.path.dirname(k[0]) != _BENCH_DIR
                and not k[0].startswith("<frozen runpy")
                and k[2] != "<module>"
            ]
            return [
                f"  {count * ms_per_sample / n:8.3f} ms {100 * count / max(1, samples):5.1f} %  "
                f"{_where(key)}"
                for key, count in ranked[:top]
            ]

        return (
            "\n".join(
                [
                    f"CPU sampling profile of the engine throughput window: {executions} "
                    f"executions, {samples} stack samples (SIGPROF on process CPU time),",
                    f"  scaled to the {fmt_ms(cpu_ms_per_exec)} ms of supervisor CPU per execution "
                    "that rusage measured (statistical: +-1/sqrt(samples) per line)",
                    "",
                    f"  top {top} by own CPU: ms per execution, share of samples",
                    *rows(own),
                    "",
                    f"  top {top} by inclusive CPU (callees included)",
                    *rows(inclusive),
                ]
            )
            + "\n"
        )


class WallProfiler(Profiler):
    """cProfile with its default (wall) clock, in the event-loop thread.

    Time blocked in a call (fork/exec, a thread start, a slow cgroupfs write)
    counts, which matters for latency: nothing else runs on the loop meanwhile.
    Time idle in ``epoll.poll`` is shown apart.
    """

    def __init__(self) -> None:
        self.profiler = cProfile.Profile()

    def start(self) -> None:
        self.profiler.enable()

    def stop(self) -> None:
        self.profiler.disable()

    def report(self, executions: int, cpu_ms_per_exec: float | None, top: int = 25) -> str:
        stats = pstats.Stats(self.profiler)
        raw: dict[_Key, tuple[int, int, float, float, Any]] = stats.stats  # type: ignore[attr-defined]
        n = max(1, executions)
        idle = sum(v[2] for k, v in raw.items() if "select.epoll" in k[2])
        total = sum(v[2] for v in raw.values())
        skip = ("_run_once", "run_forever", "run", "_run")
        kept = {k: v for k, v in raw.items() if "select.epoll" not in k[2] and k[2] not in skip}
        lines = [
            f"cProfile (wall clock, event-loop thread) of the engine throughput window "
            f"({executions} executions, profiler overhead included):",
            f"  {1000 * (total - idle) / n:.3f} ms outside epoll.poll + "
            f"{1000 * idle / n:.3f} ms idle in it, per execution",
            "",
            f"  top {top} by own time: ms per execution, calls per execution",
            *_top_lines([(k, v[2], v[1]) for k, v in kept.items()], n, top, "x"),
            "",
            f"  top {top} by cumulative time",
            *_top_lines([(k, v[3], v[1]) for k, v in kept.items()], n, top, "x"),
        ]
        return "\n".join(lines) + "\n"
