"""The `liberator` command's entry point: from the first moment on, a SIGTERM is remembered, not fatal.

Importing the CLI (pydantic, httpx, the connectors' drivers) takes a few tenths of a second, longer on a
loaded host; a supervisor that stops the daemon in that window must see a clean exit, not a death by signal.
"""

from __future__ import annotations

import signal


def main() -> int:
    early_signals: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, _frame: early_signals.append(signum))
    from liberator import cli  # after the handler: these imports are the slow part

    return cli.main(early=(early_signals, previous))
