"""``python -m bench.beat_probe [beat options]``: the production beat, with timing marks.

Runs :func:`beat.__main__.main` unchanged, after wrapping three methods of
:class:`beat.service.Beat` so that each prints one line to stderr when it starts or
ends: ``BENCH {"mark": ..., "t": epoch seconds}``. The marks are the only change: the
wrappers call the originals and add one ``print`` each (microseconds, outside the
tick path).

- ``init``: the profile is loaded and the job table built (``Beat.__init__`` returned);
- ``elected`` / ``scheduled``: leadership won / the full schedule (catch-up done, every
  job in the due-time heap), around ``Beat._on_elected``;
- ``reload-start`` / ``reload-end``: the reload starts (``Beat._start_loading``: SIGHUP or
  file change; the table is built in the background) / the new table is in place
  (``Beat._swap`` returned).
"""

from __future__ import annotations

import functools
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from beat.__main__ import main
from beat.service import Beat


def mark(name: str, **extra: Any) -> None:
    print("BENCH " + json.dumps({"mark": name, "t": time.time(), **extra}), file=sys.stderr)
    sys.stderr.flush()


def _around(method: Callable[..., Any], before: str | None, after: str) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapper(self: Beat, *args: Any, **kwargs: Any) -> Any:
        if before:
            mark(before)
        result = method(self, *args, **kwargs)
        mark(after, heap=len(self._core))
        return result

    return wrapper


Beat.__init__ = _around(Beat.__init__, None, "init")  # type: ignore[method-assign]
Beat._on_elected = _around(Beat._on_elected, "elected", "scheduled")  # type: ignore[method-assign]
Beat._start_loading = _around(Beat._start_loading, "reload-start", "reload-loading")  # type: ignore[method-assign]
Beat._swap = _around(Beat._swap, None, "reload-end")  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(main())
