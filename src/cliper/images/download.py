"""Download one URL into a file, with a timeout, retries and an atomic rename."""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
from pathlib import Path

from cliper.images.load import MAX_IMAGE_BYTES

USER_AGENT = "cliper-image-fetch/0.1"


def download_url(url: str, dest: str | Path, timeout: float = 10.0, retries: int = 2, backoff: float = 0.5,
                 max_bytes: int = MAX_IMAGE_BYTES) -> str | None:
    """Fetch ``url`` into ``dest``; return None on success or the last error as text.

    Retries on network errors and 5xx/429 answers (``backoff * 2**attempt`` seconds
    between tries); a 4xx answer is final. Written to a temp file and renamed, so a
    killed download never leaves a partial ``dest``.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    last = "not attempted"
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
        try:
            req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                data = resp.read(max_bytes + 1)
            if len(data) > max_bytes:
                return f"larger than {max_bytes} bytes"
            if not data:
                last = "empty response"
                continue
            tmp.write_bytes(data)
            os.replace(tmp, dest)
            return None
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
            if exc.code < 500 and exc.code != 429:
                return last
        except (urllib.error.URLError, OSError, ValueError) as exc:
            last = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
        finally:
            if tmp.exists():
                tmp.unlink(missing_ok=True)
    return last
