"""Run many ``cliper`` command lines through the real entry point in ONE process (startup is paid once).

Usage: ``python cli_driver.py cases.json results.json``. ``cases.json`` is a list of
``{"name": ..., "argv": [...]}``. For each case, file descriptor 2 is pointed at a fresh
file, so everything the command writes to stderr (log records included) is captured;
``cliper.cli.main.main()`` runs and its ``SystemExit`` code is recorded with the time taken
and the peak resident memory of the process so far (VmHWM).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time

from cliper.runtime import peak_rss_mb


def run_case(argv: list[str]) -> dict:
    from cliper.cli.main import main

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as err:
        os.dup2(err.fileno(), 2)
        code: object = None
        t0 = time.perf_counter()
        try:
            sys.argv = ["cliper", *argv]
            main()
        except SystemExit as exc:
            code = exc.code
        except BaseException as exc:  # a crash of main() itself: report it, do not hide it
            import traceback

            traceback.print_exc()
            code = f"raised {type(exc).__name__}"
        finally:
            seconds = time.perf_counter() - t0
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
        err.seek(0)
        text = err.read().decode("utf-8", "replace")
    return {"code": code, "stderr": text, "seconds": seconds,
            "maxrss_mb": peak_rss_mb()}


def main() -> None:
    spec, target = sys.argv[1], sys.argv[2]  # read before the cases rewrite sys.argv
    cases = json.loads(open(spec, encoding="utf-8").read())
    out = {c["name"]: run_case(c["argv"]) for c in cases}
    with open(target, "w", encoding="utf-8") as fh:
        json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
