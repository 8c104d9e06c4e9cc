"""Test-only crash points: kill the process at a named point to prove crash safety.

Honoured only when the environment variable ``DICOMLAKE_TEST_CRASH_POINT`` names the point (see
"Test settings" in ``docs/configuration.md``); it is not a service setting and is never set in a
deployment. The process ends with ``os._exit`` (no clean-up, no flushing), as a kill would.
"""

from __future__ import annotations

import logging
import os

logger = logging.getLogger(__name__)
ENV = "DICOMLAKE_TEST_CRASH_POINT"
EXIT_CODE = 70


def crash_point(name: str) -> None:
    if os.environ.get(ENV) == name:
        logger.critical("test crash point reached, exiting", extra={"crash_point": name})
        os._exit(EXIT_CODE)
