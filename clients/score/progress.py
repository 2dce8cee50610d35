"""What the user sees while a file is scored: a progress bar and log lines on stderr (none with --quiet)."""

from __future__ import annotations

import logging
import sys

from tqdm import tqdm


def configure_logging(quiet: bool) -> None:
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


class Progress:
    """Rows done, rows/s and ETA (when the total is known up front: not for CSV)."""

    def __init__(self, total_rows: int | None, rows_already_done: int, quiet: bool) -> None:
        self._bar = tqdm(
            total=total_rows,
            initial=rows_already_done,
            unit="rows",
            unit_scale=True,
            desc="scoring",
            file=sys.stderr,
            disable=quiet,
            dynamic_ncols=True,
            mininterval=0.5,
        )

    def advance(self, rows: int) -> None:
        self._bar.update(rows)

    def close(self) -> None:
        self._bar.close()
