"""Probabilistic duplicate suggestions for customer profiles, with Splink.

Deterministic identity resolution only merges profiles that share an identifier (an email, a
phone, a device id). People also sign up twice with a typo, a second address or a new phone;
this module finds such *likely* duplicates with a Fellegi-Sunter model (Splink): records are
paired through cheap blocking rules, each pair is compared field by field (names, email, phone,
postcode, city, birth date) and scored with a match probability. The model is trained without
labels (u by seeded random sampling, m by expectation maximisation) and starts from sensible
priors, so small inputs still get reasonable scores. Results are suggestions for a reviewer or
a merge rule; this module never touches a database.
"""

from __future__ import annotations

import contextlib
import logging
import re
import uuid
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

RECORD_COLUMNS = (
    "id",
    "first_name",
    "last_name",
    "email",
    "phone",
    "postcode",
    "city",
    "birth_date",
)
RESULT_COLUMNS = ("left_id", "right_id", "probability")

# Derived columns, computed with pyarrow before the data reaches the backend.
EMAIL_USER = "email_user"  # the local part of the email, before "@"
PHONE_TAIL = "phone_tail"  # the last PHONE_TAIL_DIGITS digits (a number without country code)
PHONE_TAIL_DIGITS = 8
BIRTH_DAY = "birth_day"  # the birth date as days since 1970-01-01 (null if not a real date)

# The model is trained on the data only when there is enough of it; below that the priors
# stand. 200 records give ~20,000 random pairs for u; EM needs a few hundred blocked pairs.
MIN_RECORDS_FOR_TRAINING = 200
MIN_PAIRS_FOR_EM = 300
# Assumed share of records that have a duplicate, for the prior P(two random records match)
# when it cannot be estimated from deterministic rules.
ASSUMED_DUPLICATE_SHARE = 0.05
# Expected recall of the deterministic rules used to estimate that prior.
DETERMINISTIC_RECALL = 0.6
# Pairs sampled to estimate u (how often two different people agree on each field).
U_MAX_PAIRS = 2e6


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def find_duplicates(
    records: pd.DataFrame,
    *,
    threshold: float = 0.9,
    backend: str = "duckdb",
    spark: Any = None,
    seed: int = 1,
) -> pd.DataFrame:
    """Pairs of records that probably describe the same person.

    ``records`` has the columns of :data:`RECORD_COLUMNS` (strings or nulls; ``id`` unique,
    ``phone`` in E.164, ``email`` lower-case); missing columns count as empty and extra columns
    are ignored; ids are compared and returned as strings. Returns ``left_id, right_id,
    probability`` for every pair whose match probability is at least ``threshold``
    (``left_id < right_id``, one row per pair, most probable first). Records that share no
    blocking key (e.g. only a city is known) are never paired.

    ``backend`` is ``"duckdb"`` (in-process, a fresh in-memory database per call; the
    default) or ``"spark"``, which runs the same model with Splink's Spark backend on the
    given ``spark`` session (pyspark is imported only then). That session must have Splink's
    similarity jar on its class path (``spark.jars`` set to
    ``splink.backends.spark.similarity_jar_location()``, for Jaro-Winkler and friends) and a
    checkpoint directory (``spark.sparkContext.setCheckpointDir(...)``); the tables Splink
    creates are dropped afterwards.

    Training: u (how often different people agree) from a random sample of pairs drawn with
    ``seed``, m (how often the same person does) by expectation maximisation on blocked
    pairs, both only from 200 records up; smaller inputs are scored with the built-in priors.
    The same ``seed`` on the same data gives the same result.
    """
    if backend not in ("duckdb", "spark"):
        raise ValueError(f"unknown backend {backend!r}: use 'duckdb' or 'spark'")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be between 0 and 1, not {threshold}")
    if backend == "spark" and spark is None:
        raise ValueError("backend='spark' needs a SparkSession: pass spark=...")
    frame = prepare_records(records)
    present = _columns_with_values(frame)
    if len(frame) < 2 or not _can_compare(present):
        return _empty_result()
    with _quiet_splink():
        scored = _score(
            frame, present, threshold=threshold, backend=backend, spark=spark, seed=seed
        )
    return _tidy(scored)


def prepare_records(records: pd.DataFrame) -> pd.DataFrame:
    """Normalise ``records`` for comparison and add the derived columns (vectorised, Arrow).

    Names lose case, accents, punctuation and spaces (``O'Brien`` → ``obrien``, ``Müller`` →
    ``muller``); cities lose case, accents and punctuation; emails are lower-cased; postcodes
    are upper-cased without spaces; birth dates (``YYYY-MM-DD``, ``YYYY/MM/DD``, ``YYYYMMDD``,
    optionally followed by a time) become ``YYYY-MM-DD`` (impossible dates such as
    ``1980-13-45`` are kept as text for the exact and typo levels), anything else is treated
    as missing; empty values become null. ``email_user`` (the part before ``@``),
    ``phone_tail`` (the last digits) and ``birth_day`` (days since 1970-01-01) are added.
    """
    columns = {column: _text(records, column) for column in RECORD_COLUMNS}
    if columns["id"].null_count:
        raise ValueError("every record needs an id")
    if len(pc.unique(columns["id"])) != len(records):
        raise ValueError("record ids must be unique")
    columns["first_name"] = _fold(columns["first_name"], keep_spaces=False)
    columns["last_name"] = _fold(columns["last_name"], keep_spaces=False)
    columns["city"] = _fold(columns["city"], keep_spaces=True)
    columns["email"] = pc.utf8_lower(columns["email"])
    columns["postcode"] = pc.replace_substring_regex(pc.utf8_upper(columns["postcode"]), r"\s+", "")
    columns["birth_date"] = _iso_date(columns["birth_date"])
    columns[BIRTH_DAY] = _days_since_epoch(columns["birth_date"])
    columns[EMAIL_USER] = _email_user(columns["email"])
    columns[PHONE_TAIL] = _phone_tail(columns["phone"])
    table = pa.table(
        {
            name: values if name == BIRTH_DAY else _empty_as_null(values)
            for name, values in columns.items()
        }
    )
    return table.to_pandas(integer_object_nulls=True)


# --------------------------------------------------------------------------------------------
# Input preparation (pyarrow compute: RE2 regular expressions, no Python loop over rows)
# --------------------------------------------------------------------------------------------


def _text(records: pd.DataFrame, column: str) -> pa.Array:
    """``records[column]`` as stripped Arrow strings; a missing column is all null."""
    if column not in records.columns:
        return pa.nulls(len(records), pa.string())
    values = records[column].astype("string").to_numpy(dtype=object, na_value=None)
    return _empty_as_null(pc.utf8_trim_whitespace(pa.array(values, type=pa.string())))


def _empty_as_null(values: pa.Array) -> pa.Array:
    return pc.if_else(pc.equal(values, ""), pa.scalar(None, pa.string()), values)


def _fold(values: pa.Array, *, keep_spaces: bool) -> pa.Array:
    """Lower case, no accents, punctuation and spaces removed (or one space if ``keep_spaces``).

    ``St. Pölten`` → ``st polten`` (or ``stpolten``), ``de Vries`` → ``de vries``
    (``devries``); letters of any script are kept.
    """
    folded = pc.utf8_normalize(pc.utf8_lower(values), form="NFKD")
    folded = pc.replace_substring_regex(folded, r"\p{M}+", "")
    folded = pc.replace_substring_regex(folded, r"[^\p{L}\p{N}]+", " " if keep_spaces else "")
    return pc.utf8_trim_whitespace(folded)


def _iso_date(values: pa.Array) -> pa.Array:
    parts = pc.extract_regex(values, r"^(?P<y>\d{4})[-/.]?(?P<m>\d{2})[-/.]?(?P<d>\d{2})(?:\D|$)")
    year, month, day = (pc.struct_field(parts, name) for name in ("y", "m", "d"))
    return pc.binary_join_element_wise(year, month, day, "-")


def _days_since_epoch(iso_dates: pa.Array) -> pa.Array:
    """Compared as numbers, because parsing dates in SQL for every pair is slow."""
    parsed = pc.strptime(iso_dates, format="%Y-%m-%d", unit="s", error_is_null=True)
    return pc.cast(pc.cast(parsed, pa.date32()), pa.int32())


def _email_user(emails: pa.Array) -> pa.Array:
    return pc.struct_field(pc.extract_regex(emails, r"^(?P<user>.+)@[^@]*$"), "user")


def _phone_tail(phones: pa.Array) -> pa.Array:
    digits = pc.replace_substring_regex(phones, r"\D+", "")
    tail = pc.utf8_slice_codeunits(digits, start=-PHONE_TAIL_DIGITS)
    long_enough = pc.greater_equal(pc.utf8_length(digits), PHONE_TAIL_DIGITS)
    return pc.if_else(long_enough, tail, pa.scalar(None, pa.string()))


def _columns_with_values(frame: pd.DataFrame) -> set[str]:
    return {column for column in frame.columns if frame[column].notna().any()}


def _can_compare(present: set[str]) -> bool:
    """Whether any blocking rule can pair records (without one Splink would compare all)."""
    return bool(_prediction_rules(present))


def _empty_result() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "left_id": pd.Series(dtype=object),
            "right_id": pd.Series(dtype=object),
            "probability": pd.Series(dtype=float),
        }
    )


# --------------------------------------------------------------------------------------------
# The model: comparisons with priors, blocking rules, training rules
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Level:
    """One comparison level: a kind of agreement and its prior m and u probabilities."""

    kind: str  # "exact", "jaro_winkler", "levenshtein", "within", "swapped", "else"
    column: str
    threshold: float = 0.0
    other: str = ""  # for "swapped": this column on one side equals `other` on the other
    m: float = 0.0
    u: float = 0.0
    tf: bool = False


@dataclass(frozen=True)
class ComparisonSpec:
    """A comparison of one input column (null level implied), used only if it has values."""

    column: str
    levels: tuple[Level, ...]


def _name_levels(column: str, other: str) -> tuple[Level, ...]:
    """Names: exact, close (Jaro-Winkler), swapped with ``other`` (first ↔ last name)."""
    return (
        Level("exact", column, m=0.80, u=0.006, tf=True),
        Level("jaro_winkler", column, 0.92, m=0.10, u=0.002),
        Level("swapped", column, other=other, m=0.02, u=1e-4),
        Level("jaro_winkler", column, 0.80, m=0.03, u=0.03),
        Level("else", column, m=0.05, u=0.962),
    )


COMPARISONS: tuple[ComparisonSpec, ...] = (
    ComparisonSpec("first_name", _name_levels("first_name", "last_name")),
    ComparisonSpec("last_name", _name_levels("last_name", "first_name")),
    ComparisonSpec(
        "email",
        (
            Level("exact", "email", m=0.75, u=1e-5),
            Level("exact", EMAIL_USER, m=0.08, u=1e-4),
            Level("levenshtein", EMAIL_USER, 2, m=0.07, u=5e-4),
            Level("else", "email", m=0.10, u=0.9994),
        ),
    ),
    ComparisonSpec(
        "phone",
        (
            Level("exact", "phone", m=0.75, u=1e-5),
            Level("exact", PHONE_TAIL, m=0.08, u=1e-4),
            Level("levenshtein", "phone", 1, m=0.05, u=1e-3),
            Level("else", "phone", m=0.12, u=0.9989),
        ),
    ),
    ComparisonSpec(
        "postcode",
        (
            Level("exact", "postcode", m=0.80, u=0.005),
            Level("levenshtein", "postcode", 1, m=0.10, u=0.05),
            Level("else", "postcode", m=0.10, u=0.945),
        ),
    ),
    ComparisonSpec(
        "city",
        (
            Level("exact", "city", m=0.80, u=0.03, tf=True),
            Level("jaro_winkler", "city", 0.90, m=0.10, u=0.004),
            Level("else", "city", m=0.10, u=0.966),
        ),
    ),
    ComparisonSpec(
        "birth_date",
        (
            Level("exact", "birth_date", m=0.85, u=5e-5),
            Level("levenshtein", "birth_date", 1, m=0.08, u=2e-3),
            Level("within", BIRTH_DAY, 366, m=0.03, u=0.02),
            Level("else", "birth_date", m=0.04, u=0.978),
        ),
    ),
)

# Blocking rules for predictions: pairs must agree on all the columns of at least one rule.
# Each rule is kept only if all its columns have values. Expressions may use substr().
PREDICTION_RULES: tuple[tuple[str, ...], ...] = (
    ("email",),
    (EMAIL_USER,),
    ("phone",),
    (PHONE_TAIL,),
    ("first_name", "last_name"),
    ("last_name", "birth_date"),
    ("first_name", "birth_date"),
    ("birth_date", "postcode"),
    ("birth_date", "city"),
    ("birth_date", "substr(first_name, 1, 1)"),
    ("birth_date", "substr(last_name, 1, 1)"),
    ("postcode", "substr(last_name, 1, 2)"),
    ("postcode", "substr(first_name, 1, 2)"),
    ("city", "substr(last_name, 1, 2)", "substr(first_name, 1, 1)"),
    ("city", "last_name", "substr(first_name, 1, 1)"),
    ("substr(first_name, 1, 3)", "substr(last_name, 1, 3)", "substr(birth_date, 1, 4)"),
)

# People whose first and last names were entered the wrong way round.
SWAPPED_NAMES_RULE = "l.first_name = r.last_name AND l.last_name = r.first_name"

# EM sessions: each one trains every comparison whose columns its rule does not use, so the
# first rule usable of each group trains names, then the other fields.
TRAINING_RULES: tuple[tuple[tuple[str, ...], ...], ...] = (
    (("first_name", "last_name"), ("email",), ("phone",)),
    (("birth_date",), ("postcode",), ("email",), ("phone",)),
)

# Deterministic rules (very few false positives) for estimating P(two random records match).
DETERMINISTIC_RULES: tuple[tuple[str, ...], ...] = (
    ("first_name", "last_name", "birth_date"),
    ("first_name", "last_name", "email"),
    ("first_name", "last_name", "phone"),
)


def _rule_columns(rule: Sequence[str]) -> set[str]:
    columns = set()
    for part in rule:
        match = re.fullmatch(r"substr\((\w+),.*\)", part)
        columns.add(match.group(1) if match else part)
    return columns


def _usable(rules: Sequence[tuple[str, ...]], present: set[str]) -> list[tuple[str, ...]]:
    return [rule for rule in rules if _rule_columns(rule) <= present]


# --------------------------------------------------------------------------------------------
# Splink
# --------------------------------------------------------------------------------------------


def _comparison(spec: ComparisonSpec, *, term_frequencies: bool) -> Any:
    import splink.comparison_level_library as cll
    from splink.comparison_library import CustomComparison

    levels = [cll.NullLevel(spec.column)]
    for level in spec.levels:
        levels.append(_level(level, cll, term_frequencies=term_frequencies))
    return CustomComparison(levels, output_column_name=spec.column)


def _level(level: Level, cll: Any, *, term_frequencies: bool) -> Any:
    column = level.column
    if level.kind == "exact":
        tf = level.tf and term_frequencies
        created = cll.ExactMatchLevel(column, term_frequency_adjustments=tf)
    elif level.kind == "jaro_winkler":
        created = cll.JaroWinklerLevel(column, level.threshold)
    elif level.kind == "levenshtein":
        created = cll.LevenshteinLevel(column, int(level.threshold))
    elif level.kind == "within":
        created = cll.CustomLevel(
            f"abs({column}_l - {column}_r) <= {level.threshold:g}",
            label_for_charts=f"{column} within {level.threshold:g}",
        )
    elif level.kind == "swapped":
        created = cll.CustomLevel(
            f"{column}_l = {level.other}_r AND {level.other}_l = {column}_r",
            label_for_charts=f"{column} and {level.other} swapped",
        )
    else:
        created = cll.ElseLevel()
    return created.configure(m_probability=level.m, u_probability=level.u)


def _block(rule: tuple[str, ...]) -> Any:
    from splink import block_on

    return block_on(*rule)


def _prediction_rules(present: set[str]) -> list[Any]:
    rules: list[Any] = [_block(rule) for rule in _usable(PREDICTION_RULES, present)]
    if {"first_name", "last_name"} <= present:
        rules.append(SWAPPED_NAMES_RULE)
    return rules


@contextlib.contextmanager
def _registered(frame: pd.DataFrame, backend: str, spark: Any) -> Iterator[Any]:
    """``frame`` as a Splink table on the backend; everything is dropped afterwards."""
    name = f"plait_profiles_{uuid.uuid4().hex[:12]}"
    if backend == "spark":
        from splink import SparkAPI

        db_api = SparkAPI(spark_session=spark)
        # An explicit schema: Spark cannot infer the type of a column that is all null.
        schema = ", ".join(
            f"{column} {'int' if column == BIRTH_DAY else 'string'}" for column in frame.columns
        )
        try:
            yield db_api.register(spark.createDataFrame(frame, schema), table_name=name)
        finally:
            db_api.delete_tables_created_by_splink_from_db()
            spark.catalog.dropTempView(name)
    else:
        from splink import DuckDBAPI

        db_api = DuckDBAPI()
        try:
            yield db_api.register(frame, table_name=name)
        finally:
            db_api.duckdb_con.close()


def _score(
    frame: pd.DataFrame,
    present: set[str],
    *,
    threshold: float,
    backend: str,
    spark: Any,
    seed: int,
) -> pd.DataFrame:
    from splink import Linker, SettingsCreator

    large = len(frame) >= MIN_RECORDS_FOR_TRAINING
    with _registered(frame, backend, spark) as table:
        settings = SettingsCreator(
            link_type="dedupe_only",
            unique_id_column_name="id",
            comparisons=[
                _comparison(spec, term_frequencies=large)
                for spec in COMPARISONS
                if spec.column in present
            ],
            blocking_rules_to_generate_predictions=_prediction_rules(present),
            probability_two_random_records_match=_prior(table, len(frame), present),
            retain_matching_columns=False,
        )
        linker = Linker(table, settings, log_level=None)
        if large:
            _train(linker, table, present, seed)
        predictions = linker.inference.predict(
            threshold_match_probability=threshold, warning_mode="never"
        )
        return predictions.as_pandas_dataframe()


def _count_pairs(table: Any, rules: Sequence[Any]) -> int:
    """How many distinct pairs the blocking ``rules`` produce together (exact count)."""
    from splink.blocking_analysis import count_comparisons_from_blocking_rules

    counts = count_comparisons_from_blocking_rules(
        table,
        blocking_rules=list(rules),
        link_type="dedupe_only",
        unique_id_column_name="id",
        record_sample_proportion=1.0,
    )
    return int(counts[-1]["cumulative_comparison_count"])


def _prior(table: Any, n: int, present: set[str]) -> float:
    """P(two random records match): from near-certain matches when there are some.

    Pairs that agree on the full name and on a strong identifier are counted and scaled up by
    the recall those rules are assumed to have (Splink's
    ``estimate_probability_two_random_records_match``, computed here so that a count of
    zero falls back to assuming that ``ASSUMED_DUPLICATE_SHARE`` of the records have a
    duplicate instead of ruling out every match).
    """
    pairs = n * (n - 1) / 2
    rules = [_block(rule) for rule in _usable(DETERMINISTIC_RULES, present)]
    certain = _count_pairs(table, rules) if rules else 0
    expected = certain / DETERMINISTIC_RECALL if certain else ASSUMED_DUPLICATE_SHARE * n / 2
    return min(0.5, max(1.0, expected) / pairs)


def _train(linker: Any, table: Any, present: set[str], seed: int) -> None:
    """u from a seeded random sample of pairs; m by EM on each usable training rule."""
    linker.training.estimate_u_using_random_sampling(max_pairs=U_MAX_PAIRS, seed=seed)
    for group in TRAINING_RULES:
        usable = _usable(group, present)
        if not usable:
            continue
        rule = _block(usable[0])
        if _count_pairs(table, [rule]) >= MIN_PAIRS_FOR_EM:
            linker.training.estimate_parameters_using_expectation_maximisation(
                rule, estimate_without_term_frequencies=True
            )


def _tidy(scored: pd.DataFrame) -> pd.DataFrame:
    if scored.empty:
        return _empty_result()
    left = scored["id_l"].astype(str)
    right = scored["id_r"].astype(str)
    result = pd.DataFrame(
        {
            "left_id": left.where(left < right, right),
            "right_id": right.where(left < right, left),
            "probability": scored["match_probability"].astype(float),
        }
    )
    result = result.sort_values("probability", ascending=False, kind="mergesort")
    result = result.drop_duplicates(["left_id", "right_id"])
    result = result.sort_values(
        ["probability", "left_id", "right_id"], ascending=[False, True, True], kind="mergesort"
    )
    return result.reset_index(drop=True)


@contextlib.contextmanager
def _quiet_splink() -> Iterator[None]:
    """Silence Splink's progress logging and warnings for the duration of a call."""
    logger = logging.getLogger("splink")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)
