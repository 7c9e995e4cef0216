"""Serving throughput and latency: `cliper serve` in a subprocess, N concurrent keep-alive clients on 127.0.0.1.

Bounded: at most ``--requests`` requests and ``--seconds`` seconds of traffic, only to 127.0.0.1.
Prints requests/s, p50/p95/p99 latency and the error count, and writes them with
``results_io.write_result``. The bundle is either given (``--bundle``, e.g. one exported
from a real run) or generated (``--generate-items N``: clustered embeddings like trained
ones, ``--generate-users`` users with a few seen items each; ``--index`` exact/ivf/hnsw).

    python benchmarks/bench_serve.py --bundle baby-bundle --concurrency 32 --requests 6000
    python benchmarks/bench_serve.py --generate-items 1000000 --index ivf --concurrency 32 --requests 4000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_io import write_result  # noqa: E402


def generate_bundle(out: Path, n_items: int, n_users: int, dim: int, index: str, seed: int = 0) -> Path:
    """A synthetic bundle: items in small clusters (about 50 items per centre; trained embeddings cluster
    loosely), users near centres, so a user's top-20 spans several IVF cells and the index needs a
    real probe count (not one cell) to reach recall 0.95."""
    from cliper.serving.bundle import BundleContent, write_bundle

    rng = np.random.default_rng(seed)
    n_centres = max(100, n_items // 50)
    centres = rng.standard_normal((n_centres, dim)).astype(np.float32)
    items = np.empty((n_items, dim), np.float32)
    step = 100_000
    for a in range(0, n_items, step):  # in blocks: bounded temporaries
        b = min(a + step, n_items)
        items[a:b] = centres[rng.integers(0, n_centres, b - a)] + 0.5 * rng.standard_normal((b - a, dim)).astype(np.float32)
    users = (centres[rng.integers(0, n_centres, n_users)]
             + 0.7 * rng.standard_normal((n_users, dim)).astype(np.float32)).astype(np.float32)
    lengths = rng.integers(1, 12, n_users)
    rows = [np.sort(rng.choice(n_items, size=int(m), replace=False)) for m in lengths]  # unique per user
    indptr = np.concatenate([[0], np.cumsum([r.size for r in rows])]).astype(np.int64)
    indices = np.concatenate(rows).astype(np.int64)
    content = BundleContent(
        users=users, items=items, user_ids=[f"U{u:07d}" for u in range(n_users)],
        item_ids=[f"I{i:08d}" for i in range(n_items)], seen_indptr=indptr, seen_indices=indices,
        metadata=[{"title": f"generated item {i}"} for i in range(n_items)],
        source={"generated": True, "seed": seed, "n_items": n_items, "n_users": n_users, "dim": dim})
    return write_bundle(content, out, index=index, index_options={"k": 20, "target_recall": 0.95}, overwrite=True)


def server_cpu_seconds(pid: int) -> float:
    """user+system CPU seconds of the server process and its worker children (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry) == pid or int(fields[1]) == pid:  # fields[1] is the parent pid
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(bundle: Path, port: int, index: str, workers: int = 1) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [sys.executable, "-c", "from cliper.cli.main import main; main()", "serve", str(bundle), "--port", str(port),
           "--no-search", "--index", index, "--workers", str(workers)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("server exited: " + proc.stderr.read().decode()[-2000:])
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                return proc
        except OSError:
            time.sleep(0.25)
    proc.kill()
    raise RuntimeError("server did not start in 300 s")


async def _client(port: int, paths: list[str], budget: dict, lat: list[float], errors: list[str], deadline: float):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while budget["left"] > 0 and time.perf_counter() < deadline:
            budget["left"] -= 1
            path = random.choice(paths)
            t0 = time.perf_counter()
            writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            body = await reader.readexactly(length)
            lat.append(time.perf_counter() - t0)
            if status != 200 or not body.startswith(b"{"):
                errors.append(f"{status} {path}")
    except Exception as exc:  # a dropped connection is an error, not a crash of the benchmark
        errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        writer.close()


async def drive(port: int, paths: list[str], concurrency: int, requests: int, seconds: float):
    lat: list[float] = []
    errors: list[str] = []
    budget = {"left": requests}
    t0 = time.perf_counter()
    await asyncio.gather(*[_client(port, paths, budget, lat, errors, t0 + seconds) for _ in range(concurrency)])
    return lat, errors, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, help="an exported bundle (else one is generated)")
    ap.add_argument("--generate-items", type=int, default=1_000_000)
    ap.add_argument("--generate-users", type=int, default=20_000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--index", default=None,
                    help="generated bundle: exact (default), ivf or hnsw; given bundle: bundle (default, its own index) or exact")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--workers", type=int, default=1, help="uvicorn worker processes of the server")
    ap.add_argument("--keep-bundle", type=Path, default=None, help="write the generated bundle here and keep it")
    ap.add_argument("--name", default=None, help="result name (default bench_serve_<items>_<index>)")
    ap.add_argument("--out-dir", default=None)
    args = ap.parse_args()

    tmp = None
    t_build = None
    if args.bundle is None:
        if args.keep_bundle is None:
            tmp = tempfile.TemporaryDirectory(prefix="bench-serve-")
        target = args.keep_bundle or Path(tmp.name) / "bundle"
        t = time.perf_counter()
        bundle = generate_bundle(target, args.generate_items, args.generate_users, args.dim, args.index or "exact")
        t_build = time.perf_counter() - t
        serve_index = "bundle"
    else:
        bundle = args.bundle
        serve_index = args.index or "bundle"
        if serve_index not in ("bundle", "exact"):
            ap.error("--index with --bundle is bundle or exact")
    manifest = json.loads((bundle / "manifest.json").read_text())
    user_ids = json.loads((bundle / "ids.json").read_text())["users"]
    port = _free_port()
    t = time.perf_counter()
    proc = start_server(bundle, port, serve_index, args.workers)
    t_start = time.perf_counter() - t
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as r:
            health = json.loads(r.read())
        rng = random.Random(0)
        sample = rng.sample(user_ids, min(5000, len(user_ids)))
        paths = [f"/v1/users/{quote(u, safe='')}/recommendations?k={args.k}" for u in sample]
        asyncio.run(drive(port, paths, min(args.concurrency, 8), args.warmup, 30))  # warm caches, not counted
        cpu0, client0 = server_cpu_seconds(proc.pid), time.process_time()
        lat, errors, wall = asyncio.run(drive(port, paths, args.concurrency, args.requests, args.seconds))
        server_cpu, client_cpu = server_cpu_seconds(proc.pid) - cpu0, time.process_time() - client0
        alive = proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(20)
        if tmp is not None:
            tmp.cleanup()
    lat_ms = np.array(lat) * 1e3
    recall = (health["index"].get("recall") or {})
    row = {
        "items": manifest["n_items"], "users": manifest["n_users"], "dim": manifest["dim"],
        "index": health["index"]["kind"], "index_params": json.dumps(health["index"].get("params", {})),
        "recall_at_k": recall.get("value", 1.0), "recall_k": recall.get("k", args.k),
        "concurrency": args.concurrency, "workers": args.workers, "requests": len(lat), "errors": len(errors),
        "requests_per_s": round(len(lat) / wall, 1), "p50_ms": round(float(np.percentile(lat_ms, 50)), 2),
        "p95_ms": round(float(np.percentile(lat_ms, 95)), 2), "p99_ms": round(float(np.percentile(lat_ms, 99)), 2),
        "server_cpu_ms_per_request": round(server_cpu / max(len(lat), 1) * 1e3, 3),
        "client_cpu_ms_per_request": round(client_cpu / max(len(lat), 1) * 1e3, 3),
        "server_start_s": round(t_start, 1), "bundle_build_s": None if t_build is None else round(t_build, 1),
        "server_alive": alive, "loadavg_1m": round(os.getloadavg()[0], 2),
    }
    name = args.name or f"bench_serve_{manifest['n_items']}_{row['index']}"
    path = write_result(name, list(row), [row], threads=1, out_dir=args.out_dir,
                        notes=f"GET /v1/users/{{id}}/recommendations?k={args.k}, {args.concurrency} keep-alive clients on "
                              f"127.0.0.1, {args.workers} uvicorn worker(s). server_cpu_ms_per_request: CPU time of the "
                              "server processes over the measured requests, a load-independent cost (capacity per core "
                              "is about 1000 / it). First errors: " + ("; ".join(errors[:3]) or "none"))
    for k, v in row.items():
        print(f"{k:>16}: {v}")
    print(f"written: {path}")


if __name__ == "__main__":
    main()
