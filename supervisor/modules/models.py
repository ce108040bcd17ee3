"""What the resolver takes and gives: its error, its result, and the services it is handed.

The policy callback and the TypeScript preparer are described as protocols
rather than imported: this package sits beside ``supervisor.policy`` and
``supervisor.typescript`` and may not import its siblings, so the composition
root hands them in (``supervisor.typescript.TypeStripper`` satisfies
:class:`ModulePreparer`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

BundleFormat = Literal["cjs", "esm"]

ErrorCode = Literal["EINVAL", "ENOTFOUND", "EACCES", "ENETWORK", "EPARSE", "ETIMEDOUT"]


class ModuleError(Exception):
    """A module that cannot be imported, with a stable ``code`` and a message for the user.

    Codes: ``EINVAL`` a specifier of a kind that is not supported, or malformed;
    ``ENOTFOUND`` no such package, version or module; ``EACCES`` refused by the
    policy (or the bundle would include a file of this host); ``ENETWORK`` a
    registry or host that could not be reached or answered an error;
    ``EPARSE`` a module that does not parse or cannot be bundled (too large
    included); ``ETIMEDOUT`` the resolution took longer than its deadline.

    The message names the specifier or URL and what was wrong: it reaches the
    user's code as the import's error.
    """

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code: ErrorCode = code
        self.message = message

    def __repr__(self) -> str:
        return f"ModuleError({self.code!r}, {self.message!r})"


# Decide's policy input for imports is {"operation": "import", "specifier": ..., "url": ...}.


class PreparedModuleLike(Protocol):
    """A downloaded module ready to bundle (``supervisor.typescript.PreparedModule``)."""

    @property
    def code(self) -> str: ...

    @property
    def dependencies(self) -> tuple[str, ...]: ...


class ModulePreparer(Protocol):
    """Strips types and makes specifiers absolute (``supervisor.typescript.TypeStripper``).

    ``dependencies`` are absolute URLs for relative and URL imports, and
    ``npm:``/``jsr:``/``node:``/bare specifiers as written; a module that does
    not parse raises ``supervisor.errors.InvalidRequest``.
    """

    async def prepare_module(
        self, code: str, url: str, *, typescript: bool
    ) -> PreparedModuleLike: ...


@dataclass(frozen=True)
class ResolvedModule:
    """One import turned into one self-contained bundle.

    ``format`` says how the sandbox evaluates ``source``: ``cjs`` as the body
    of a ``function (module, exports, require)`` (a plain script, about three
    times faster to evaluate than a module), ``esm`` as an ES module (used
    only when the code needs one: top-level await, ``import.meta``).
    """

    specifier: str
    sha256: str
    source: bytes
    format: BundleFormat
