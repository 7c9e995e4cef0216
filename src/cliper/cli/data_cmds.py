"""``cliper data ...``: build an MMRec dataset from a raw log, and describe a ``.inter`` file."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from cliper.errors import DataError

# This stage's commands; cliper.cli.main composes them into the one console script.
app = typer.Typer()

data_app = typer.Typer(
    help="Interaction datasets: build MMRec-format folders from raw logs, and inspect them.",
    no_args_is_help=True,
)


class RawFormat(str, Enum):
    csv = "csv"
    jsonl = "jsonl"
    parquet = "parquet"


class SplitMethod(str, Enum):
    random = "random"
    temporal = "temporal"


@data_app.command("build")
def build_cmd(
    raw: Path = typer.Argument(
        ..., help="Raw interaction log: .csv/.tsv, .jsonl/.json (optionally .gz) or .parquet.", show_default=False
    ),
    output: Path = typer.Option(
        ..., "--output", "-o", help="Folder to write <name>.inter, u_id_mapping.tsv, i_id_mapping.tsv, "
        "build_summary.json into (created if needed).", show_default=False
    ),
    fmt: Optional[RawFormat] = typer.Option(None, "--format", help="Input format; default: from the file name."),
    user_col: Optional[str] = typer.Option(
        None, "--user-col", help="User column (default: first of user_id, userID, user, reviewerID, uid)."
    ),
    item_col: Optional[str] = typer.Option(
        None, "--item-col", help="Item column (default: first of item_id, itemID, item, asin, parent_asin, iid)."
    ),
    time_col: Optional[str] = typer.Option(
        None, "--time-col", help="Timestamp column, unix seconds or ISO-8601 (default: first of timestamp, "
        "unixReviewTime, time, ts, if present)."
    ),
    rating_col: Optional[str] = typer.Option(
        None, "--rating-col", help="Rating column (default: first of rating, overall, score, if present)."
    ),
    min_rating: Optional[float] = typer.Option(
        None, "--min-rating", help="Keep only rows with rating >= this value (needs a rating column)."
    ),
    k_core: int = typer.Option(5, "--k-core", help="Iterative k-core: every user and item keeps >= k interactions "
                               "(0 or 1 disables)."),
    split: SplitMethod = typer.Option(
        SplitMethod.random, "--split", help="random: seeded per-user 80/10/10 (1/1 for users with < 10 "
        "interactions); temporal: latest -> test, second latest -> valid."
    ),
    seed: int = typer.Option(2024, "--seed", help="Seed of the random split."),
    name: Optional[str] = typer.Option(None, "--name", help="Dataset name (<name>.inter); default: the folder's name."),
    item_header: str = typer.Option("asin", "--item-header", help="Header of the raw item id in i_id_mapping.tsv."),
    user_header: str = typer.Option("user_id", "--user-header", help="Header of the raw user id in u_id_mapping.tsv."),
    sep: Optional[str] = typer.Option(
        None, "--sep", help="CSV delimiter (default: tab for .tsv/.txt, comma otherwise); '\\t' means tab."
    ),
    force: bool = typer.Option(False, "--force", help="Replace a finished dataset in --output made from other inputs "
                               "or options (otherwise that is refused)."),
) -> None:
    """Build an MMRec dataset folder from a raw interaction log.

    Reads and validates the log, drops duplicate (user, item) pairs (keeping the earliest), applies iterative k-core filtering, numbers users and items 0.. in order of their original ids, splits each user's interactions, and writes the files.

    Example: cliper data build reviews_Baby_5.json.gz -o data/baby --user-col reviewerID --item-col asin
    """
    from cliper.data.build import build_dataset
    from cliper.data.raw import ColumnMap

    result = build_dataset(
        raw,
        output,
        fmt=fmt.value if fmt else None,
        columns=ColumnMap(user=user_col, item=item_col, timestamp=time_col, rating=rating_col),
        k_core=k_core,
        split=split.value,
        seed=seed,
        name=name,
        min_rating=min_rating,
        user_header=user_header,
        item_header=item_header,
        sep="\t" if sep in ("\\t", "tab") else sep,
        force=force,
    )
    s = result.summary
    typer.echo(
        f"{result.inter}: {s['users']:,} users, {s['items']:,} items, "
        f"train/valid/test {s['train']:,}/{s['valid']:,}/{s['test']:,}"
    )


def resolve_inter(path: Path) -> Path:
    """A ``.inter`` file, or the single ``*.inter`` file inside a folder."""
    if path.is_dir():
        found = sorted(path.glob("*.inter"))
        if not found:
            raise DataError("no *.inter file in this folder", path)
        if len(found) > 1:
            raise DataError(
                f"several .inter files ({', '.join(p.name for p in found)}); name one of them", path
            )
        return found[0]
    if not path.exists():
        raise DataError("no such file or folder", path)
    return path


def _fmt(key: str, value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3e}" if key == "density" else f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


@data_app.command("stats")
def stats_cmd(
    path: Path = typer.Argument(..., help="A .inter file, or a folder holding exactly one.", show_default=False),
    as_json: bool = typer.Option(False, "--json", help="Print the statistics as one JSON object."),
) -> None:
    """Validate a .inter file and print its sizes, split counts, density and degrees.

    Example: cliper data stats ../shared/data/amazon-baby
    """
    from cliper.data.interactions import load_inter

    inter = resolve_inter(path)
    stats = load_inter(inter).stats()
    if as_json:
        typer.echo(json.dumps(stats, indent=2))
        return
    width = max(len(k) for k in stats)
    typer.echo(f"{inter}")
    for k, v in stats.items():
        typer.echo(f"  {k:<{width}}  {_fmt(k, v):>12}")


app.add_typer(data_app, name="data", help="Interaction datasets: build MMRec folders from raw logs; inspect them.")
