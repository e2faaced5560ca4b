"""Error kinds the runtime treats differently.

Every message is one line naming the cause and the fix; the runtime prints it as is.
"""


class LiberatorError(Exception):
    """Base class: a problem with a one-line, operator-facing message."""


class ConfigError(LiberatorError):
    """The configuration file is wrong; nothing was started."""


class ConfigProblems(ConfigError):
    """Several things are wrong with one configuration file: `problems` holds each one-line error, in file
    order. As a message it is the first one and a count (`liberator check` prints them all)."""

    def __init__(self, problems: list[ConfigError]) -> None:
        self.problems = problems
        more = len(problems) - 1
        super().__init__(
            f"{problems[0]} (and {more} more problem{'s' if more > 1 else ''}: `liberator check` lists them all)"
        )


class FatalSourceError(LiberatorError):
    """The source cannot go on without an operator (bad schema change, purged log, bad credentials).

    The runtime stops that source, keeps its stored position where it was, and reports the message.
    """


class TransformError(FatalSourceError):
    """A row a transform cannot handle (a value no route maps, a hook that raised): the source stops with this
    one line; a per-row error policy catches it by this type."""


class TransientSourceError(LiberatorError):
    """The source lost its database or hit a passing fault; the runtime reopens it after a backoff."""


class SchemaError(LiberatorError):
    """A table cannot be represented exactly (an unknown column type, an unnamed key)."""


class IncompatibleSchemaError(FatalSourceError):
    """The registry refused a new schema version under the subject's compatibility rule."""


def one_line(text: object, limit: int = 300) -> str:
    """`text` on one line, no longer than about `limit`: the middle is cut, so the cause and the fix both stay."""
    flat = " ".join(str(text).split())
    if len(flat) <= limit:
        return flat
    tail = limit // 3
    cut = len(flat) - (limit - tail)
    return f"{flat[: limit - tail]} [... {cut} characters cut ...] {flat[-tail:]}"
