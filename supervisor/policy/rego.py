"""Local Rego policies, evaluated in-process with regopy (rego-cpp).

Loading happens once, at start-up, and refuses anything that would not work later:

1. the text checks of :mod:`._rego_source` (unknown functions, ``print``, duplicate defaults,
   conflicting arities), with file and line;
2. a trial build in a throwaway Python child (~50 ms), because rego-cpp *crashes the process*
   on some policies (see below) and a crash there must stop start-up with a message, not kill
   the server;
3. the real load: each module added (a syntax error names file, line and column, from the byte
   offset in regopy's error), one compiled bundle per query (``Interpreter.build`` then
   ``query_bundle``: ~160 µs per decision for the fetch example against ~1.9 ms with
   ``Interpreter.query``), and one trial evaluation that turns recursion or a missing function
   into a start-up error.

Evaluation is synchronous and CPU-bound (~80-170 µs for the example policies; see
``bench/policy_bench.py``). :meth:`LocalRegoPolicy.decide` calls it directly from async code:
a hop to a worker thread (``anyio.to_thread``, ~80 µs here) would cost about as much as the
evaluation, and the event loop is held for less than a millisecond. The interpreter is not
thread-safe (the input is interpreter state between ``set_input`` and the query), so every
evaluation holds the program's lock; a program may then be used from any thread.

regopy 1.5.2 pitfalls, as measured here:

- querying a rule whose value is ``false`` gives "undefined": the query is ``x = <ref>`` and
  the answer is the binding ``x``;
- ``Output`` parses the whole answer into ``results`` when it is built, and that is all that is
  read; ``Output.expressions()`` aborts the process on an undefined result and is never called;
- an evaluation error that rego-cpp still marks "ok" (recursion, a missing function) is
  S-expression text, so building the ``Output`` raises ``json.JSONDecodeError`` (the text is in
  ``.doc``); other errors give ``ok() == False`` and messages only in the error node tree;
- at its default log level rego-cpp prints compile errors on stdout (an MCP stdio channel):
  every interpreter is set to ``LogLevel.NONE``; ``print()`` in a policy writes to stdout at
  any level, so it is refused at load;
- ``build`` may return a bundle that is not ``ok()`` without raising (two ``default`` values
  for a rule); querying it segfaults. Its messages, without position, are only readable through
  ``regopy.rego_shared.rego_node_value``;
- crashes seen: a function defined with two arities (segfault in ``build``);
  ``with input as <rule or data reference>`` and ``with input as ...`` over a rule that passes
  ``input`` to any function or ``in`` (abort, "shape `rego-with`/`rego-localref` has no
  field"); ``every x in xs { not f({... x ...}) }`` evaluates wrongly (undefined or "Not a
  term");
- silently lenient where OPA is strict: unsafe variables, a module without a package, ``x :=``
  twice in one body; ``net.cidr_contains`` and other ``net.*`` built-ins do not exist.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from regopy import Input, Interpreter, LogLevel, NodeKind, RegoError
from regopy.rego_shared import rego_node_value

from supervisor.errors import ConfigError
from supervisor.policy._rego_source import (
    RegoModule,
    check_modules,
    collect_modules,
    describe_load_error,
    error_message,
    locate_call,
    locate_rule,
)
from supervisor.policy.base import Decision

logger = logging.getLogger(__name__)

_BINDING = "x"
_CHILD_CHECK_TIMEOUT_S = 60.0
# Runs in a child: builds the program and evaluates each query once. Errors are the parent's
# to report (it repeats the load); only a crash of the child matters here.
_CHILD_CHECK = """
import json, sys
from regopy import Input, Interpreter, LogLevel
job = json.load(sys.stdin)
interp = Interpreter()
interp.log_level = LogLevel.NONE
try:
    for name, source in job["modules"]:
        interp.add_module(name, source)
    bundles = [interp.build(query) for query in job["queries"]]
    if all(bundle.ok() for bundle in bundles):
        interp.set_input(Input({}))
        for bundle in bundles:
            interp.query_bundle(bundle)
except Exception:
    pass
"""


_CRASH_HINT = (
    "constructs known to crash regopy 1.5.2: `with input as <rule or data reference>`; "
    "`with input as ...` over a rule that passes input to a function; "
    "a function defined with two numbers of arguments"
)


@dataclass(frozen=True)
class Evaluation:
    """The value of one rule for one input: defined with a ``value``, undefined, or an error."""

    defined: bool
    value: Any = None
    error: str | None = None


class RegoProgram:
    """Rego modules loaded once into one regopy interpreter, each rule's query compiled once.

    ``rules`` are the references evaluated later, such as ``data.mcp.fetch.allow``.
    Raises :class:`ConfigError` naming the file and line of anything that cannot load.
    """

    def __init__(self, name: str, modules: Sequence[RegoModule], rules: Iterable[str]) -> None:
        self.name = name
        self.modules = tuple(modules)
        self.rules = tuple(dict.fromkeys(rules))
        self._lock = threading.Lock()
        self._interp = Interpreter()
        # The default level prints compile errors on stdout (an MCP stdio channel).
        self._interp.log_level = LogLevel.NONE
        packages = {rule.removeprefix("data.").rpartition(".")[0] for rule in self.rules}
        check_modules(self.modules, packages, self._interp.is_builtin, source_name=name)
        _build_in_child(name, self.modules, [self._query(rule) for rule in self.rules])
        for module in self.modules:
            try:
                self._interp.add_module(module.path, module.source)
            except RegoError as exc:
                raise ConfigError(
                    f"cannot load Rego policy {describe_load_error(str(exc), self.modules)}"
                ) from None
        self._bundles = {rule: self._build(rule) for rule in self.rules}
        for rule in self.rules:
            self._trial(rule)

    @classmethod
    def from_path(
        cls, path: Path, rules: Iterable[str], *, name: str | None = None, tests: bool = False
    ) -> RegoProgram:
        """Load a ``.rego`` file or a directory of them (``*_test.rego`` only with ``tests``)."""
        modules = collect_modules(path, include_tests=tests)
        return cls(name or str(path), modules, rules)

    def evaluate(self, rule: str, policy_input: Mapping[str, Any]) -> Evaluation:
        """The value of ``rule`` (one of :attr:`rules`) for ``policy_input``; never raises."""
        bundle = self._bundles.get(rule)
        if bundle is None:
            return Evaluation(False, error=f"{rule} was not compiled for this policy")
        try:
            # Held until the query returns: the interpreter must not outlive its input.
            rego_input = Input(policy_input)
        except (ValueError, TypeError) as exc:
            return Evaluation(False, error=f"input cannot be given to Rego: {exc}")
        with self._lock:
            try:
                self._interp.set_input(rego_input)
                output = self._interp.query_bundle(bundle)
            except json.JSONDecodeError as exc:
                return Evaluation(False, error=error_message(exc.doc))
            except (RegoError, ValueError, TypeError, OSError) as exc:
                return Evaluation(False, error=f"{type(exc).__name__}: {exc}")
            # ``output`` (and so the native result) stays referenced while it is read.
            if not output.ok():
                return Evaluation(False, error=_error_messages(output.node()))
            bindings = output.results[0].bindings if output.results else {}
            if _BINDING not in bindings:
                return Evaluation(False)
            return Evaluation(True, bindings[_BINDING])

    @staticmethod
    def _query(rule: str) -> str:
        # Query a binding, not the rule: a rule whose value is false would read "undefined".
        return f"{_BINDING} = {rule}"

    def _build(self, rule: str) -> Any:
        try:
            bundle = self._interp.build(self._query(rule))
        except RegoError as exc:
            raise ConfigError(
                f"cannot load Rego policy {describe_load_error(str(exc), self.modules)}"
            ) from None
        if not bundle.ok():
            # Querying a failed build crashes the process: refuse it here.
            raise ConfigError(
                f"cannot load Rego policy {self.name}: compiling {rule} failed: "
                f"{_error_messages(bundle.node())} (regopy gives no line for this error)"
            )
        return bundle

    def _trial(self, rule: str) -> None:
        """Turn defects rego-cpp only reports at evaluation into start-up errors."""
        error = self.evaluate(rule, {}).error
        if error is None:
            return
        if error.startswith("Function not found: "):
            function = error.removeprefix("Function not found: ").strip()
            where = locate_call(self.modules, function) or self.name
            raise ConfigError(f"cannot load Rego policy {where}: {error}")
        if error.startswith("Recursion detected"):
            where = locate_rule(self.modules, error.rsplit(" ", 1)[-1]) or self.name
            raise ConfigError(f"cannot load Rego policy {where}: {error}")
        logger.warning("Rego policy %s: %s fails on an empty input: %s", self.name, rule, error)


class LocalRegoPolicy:
    """A :class:`~supervisor.policy.base.PolicySource` over local Rego modules.

    Decides ``data.mcp.<category>.allow`` for the categories it was loaded for: ``true`` allows;
    ``false``, undefined, any other value or an evaluation error denies.
    """

    def __init__(self, program: RegoProgram) -> None:
        self.name = program.name
        self._program = program

    @classmethod
    def from_path(
        cls, path: Path, categories: Iterable[str], *, name: str | None = None
    ) -> LocalRegoPolicy:
        """Load ``path`` (file or directory) to decide ``categories``; raises ConfigError."""
        rules = [allow_rule(category) for category in categories]
        return cls(RegoProgram.from_path(path, rules, name=name))

    def decide_now(self, category: str, policy_input: Mapping[str, Any]) -> Decision:
        """The synchronous decision (what :meth:`decide` returns)."""
        result = self._program.evaluate(allow_rule(category), policy_input)
        if result.error is not None:
            logger.warning("Rego policy %s failed on %s: %s", self.name, category, result.error)
            return Decision(
                False,
                f"denied by policy: {self.name} failed to evaluate {category}: {result.error}",
            )
        if result.defined and result.value is True:
            return Decision(True)
        return Decision(False, f"denied by policy: {self.name} did not allow {category}")

    async def decide(self, category: str, policy_input: dict[str, Any]) -> Decision:
        """Evaluate in the event loop's thread: ~0.1 ms, less than a thread hop costs."""
        return self.decide_now(category, policy_input)


def allow_rule(category: str) -> str:
    """The rule a category's policies define: ``data.mcp.<category>.allow``."""
    return f"data.mcp.{category}.allow"


def _error_messages(root: Any) -> str:
    """The distinct messages of a regopy error tree (``Node.value`` refuses error nodes)."""
    messages: dict[str, None] = {}
    try:
        pending = [root]
        while pending:
            node = pending.pop()
            if node.kind == NodeKind.ErrorMessage:
                messages[rego_node_value(node._impl)] = None
            elif node.kind in (NodeKind.ErrorSeq, NodeKind.Error):
                pending.extend(node.at(i) for i in reversed(range(len(node))))
    except (RegoError, ValueError, TypeError, IndexError):
        pass
    return "; ".join(messages) or "rego-cpp reported an error without a message"


def _build_in_child(name: str, modules: Sequence[RegoModule], queries: Sequence[str]) -> None:
    """Build and query once in a throwaway interpreter, so a rego-cpp crash cannot kill us."""
    job = json.dumps({"modules": [[m.path, m.source] for m in modules], "queries": queries})
    try:
        done = subprocess.run(
            [sys.executable, "-I", "-c", _CHILD_CHECK],
            input=job.encode("utf-8"),
            capture_output=True,
            timeout=_CHILD_CHECK_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ConfigError(
            f"cannot load Rego policy {name}: compiling it took over {_CHILD_CHECK_TIMEOUT_S} s"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot check Rego policy {name}: {exc}") from None
    if done.returncode != 0:
        how = f"signal {-done.returncode}" if done.returncode < 0 else f"status {done.returncode}"
        tail = done.stderr.decode("utf-8", errors="replace").strip()[-300:]
        raise ConfigError(
            f"cannot load Rego policy {name}: regopy crashed compiling it ({how})"
            + (f": {tail}" if tail else "")
            + f"; {_CRASH_HINT}"
        )
