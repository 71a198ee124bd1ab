"""PII scrubbing benchmark: jupyter-gov's vectorized Arrow scrub vs presidio, same run.

Three ways to scrub the same ~200-character texts (a third hold PII):

1. jupyter-gov: ``jupyter_gov.pii.detect.scan_array`` on the whole Arrow column.
2. presidio-anonymizer's ``BatchAnonymizerEngine`` given the spans already found (span
   finding not timed): the replacement step alone.
3. presidio end to end: ``AnalyzerEngine`` (NLP-free, jupyter-gov's recognizers) then
   ``AnonymizerEngine``, text by text.

Outputs are checked equal on the texts all three scrubbed. presidio runs on the first
``--presidio-n`` texts (it is ~100x slower; a million texts would take many minutes on a
shared machine); values/s are comparable because texts are drawn alike. Also times
profiling a 100-column DuckDB table as ``unclassified: auto`` does.

``python bench/pii.py [--n 1000000] [--presidio-n 20000] [--repeat 3] [--rounds 1]``
prints a Markdown section; paste it into docs/benchmarks.md. ``--phone-study`` prints the
``phonenumbers`` measurement docs/pii.md quotes instead.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import duckdb
import pyarrow as pa


def texts(n: int, seed: int = 7) -> list[str]:
    """``n`` texts of about 200 characters; every third holds one or two entities."""
    from faker import Faker

    fake = Faker(["en_US", "de_DE", "fr_FR"])
    fake.seed_instance(seed)
    rnd = random.Random(seed)
    filler = [fake.paragraph(nb_sentences=4)[:150] for _ in range(2000)]
    pools = {
        "email": [fake.email() for _ in range(2000)],
        "phone": [fake["en_US"].phone_number() for _ in range(2000)],
        "card": [fake.credit_card_number(card_type="visa16") for _ in range(2000)],
        "iban": [fake.iban() for _ in range(2000)],
        "ssn": [fake["en_US"].ssn() for _ in range(2000)],
        "ip": [fake.ipv4() for _ in range(2000)],
    }
    kinds = list(pools)
    out = []
    for i in range(n):
        body = rnd.choice(filler)
        if i % 3 == 0:
            extra = " ".join(
                f"{k} {rnd.choice(pools[k])}" for k in rnd.sample(kinds, rnd.choice([1, 2]))
            )
            body = f"{body[: 200 - len(extra) - 1]} {extra}"
        out.append(body[:200] if i % 3 else body)
    return out


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Median seconds over ``repeat`` runs, and the last result."""
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def profile_100_columns(rows: int = 10_000) -> float:
    """Seconds to profile a 100-column table as ``unclassified: auto`` does (one sample)."""
    import jupyter_gov.connectors.registry  # noqa: F401 - a session has it loaded already
    from jupyter_gov.pii.classify import DEFAULT_SAMPLE_ROWS, profile_catalog

    sample = texts(rows)
    con = duckdb.connect(":memory:")
    columns = []
    for c in range(100):
        kind = c % 10
        if kind == 0:
            columns.append(f"'user{c}_' || i || '@example.com' AS email_{c}")
        elif kind == 1:
            columns.append(f"'+1 415-555-' || lpad((i % 10000)::VARCHAR, 4, '0') AS contact_{c}")
        elif kind == 2:
            columns.append(f"t.text AS notes_{c}")
        elif kind < 6:
            columns.append(f"i * {c} AS amount_{c}")
        else:
            columns.append(f"'status ' || (i % 7) AS label_{c}")
    con.register("t0", pa.table({"text": sample}))
    con.execute(
        "CREATE TABLE wide AS SELECT "
        + ", ".join(columns)
        + " FROM (SELECT row_number() OVER () AS i, text FROM t0) t"
    )

    class Plain:  # the connector interface profiling uses: execute(sql, params) -> a stream
        def execute(self, sql: str, params: dict[str, Any]) -> pa.RecordBatchReader:
            return con.execute(sql).to_arrow_reader()

    names = [d[0] for d in con.execute("SELECT * FROM wide LIMIT 0").description]
    elapsed, (findings, failed) = timed(
        lambda: profile_catalog(
            Plain(), None, "duckdb", {("main", "wide"): names}, DEFAULT_SAMPLE_ROWS
        ),
        3,
    )
    assert not failed and len(findings) >= 30, (len(findings), failed)
    return elapsed


def profile_demo() -> tuple[float, int, int]:
    """Seconds for the demo's first statement under ``unclassified: auto`` to profile its
    catalog (median of 3, a fresh connector each time), tables and columns profiled."""
    from jupyter_gov.connectors.duckdb import DuckDBConnector
    from jupyter_gov.engine import GovernedSession
    from jupyter_gov.pii import auto
    from jupyter_gov.policy import Policy

    data = dict(Policy.load().data)  # the demo policy, with only what no pattern finds pinned
    data["unclassified"] = "auto"
    data["classifications"] = {
        t: p for t, p in data["classifications"].items() if t in ("person_name", "address")
    }
    policy = Policy(data)
    times = []
    for _ in range(3):
        connector = DuckDBConnector("demo", "duckdb:demo")
        session = GovernedSession(policy, "bob")
        session.use_connector("demo", connector)
        catalog = connector.catalog()
        start = time.perf_counter()
        auto.classified_policy(session, policy.connection("demo"))
        times.append(time.perf_counter() - start)
        connector.close()
    entries = {id(e): e for e in catalog.tables.values()}.values()
    columns = sum(1 for e in entries for c in e.columns if not policy.tags_for(e.name, c, e.schema))
    return statistics.median(times), len(entries), columns


def phone_study(n: int = 10_000) -> None:
    """Would ``phonenumbers`` validation help? Prints the figures docs/pii.md quotes.

    On the labelled corpus of tests/pii (Faker, seed 1234, six locales): how many found and
    missed phone numbers ``phonenumbers`` calls valid, how many random ids it calls valid,
    and ``PhoneNumberMatcher``'s recall and precision given each snippet's own region.
    """
    import phonenumbers

    from jupyter_gov.pii.detect import scan_array
    from jupyter_gov.pii.recognizers import phone_valid
    from tests.pii.corpus import LOCALES, generate

    corpus = generate(n)
    hits = scan_array(pa.array(corpus.texts, pa.string())).hits["PHONE_NUMBER"]
    found = [int(h) for h in hits]
    gold = corpus.gold["PHONE_NUMBER"]
    regions = ("US", "DE", "FR", "GB", "NL", "ES")

    def valid(text: str) -> bool:
        for region in regions:
            try:
                number = phonenumbers.parse(text, region)
            except phonenumbers.NumberParseException:
                continue
            if phonenumbers.is_valid_number(number):
                return True
        return False

    inserted = corpus.values["PHONE_NUMBER"]
    missed = [v for i, v in inserted if found[i] < gold[i]]
    ours = [v for _, v in inserted if phone_valid(v)]
    rnd = random.Random(1)
    ids = [
        "".join(rnd.choice("0123456789") for _ in range(rnd.randint(8, 12))) for _ in range(5000)
    ]
    dashed = [
        f"{rnd.randint(100, 999)}-{rnd.randint(0, 9999):04d}-{rnd.randint(0, 9999):04d}"
        for _ in range(5000)
    ]
    true_positive = false_positive = 0
    for i, text in enumerate(corpus.texts):
        region = {"en_US": "US", "en_GB": "GB"}.get(LOCALES[i % 6], LOCALES[i % 6][-2:])
        matches = len(list(phonenumbers.PhoneNumberMatcher(text, region)))
        true_positive += min(matches, int(gold[i]))
        false_positive += max(0, matches - int(gold[i]))
    print(
        f"inserted {len(inserted)}; found by shape {len(ours)}, of which phonenumbers-valid "
        f"{sum(map(valid, ours))}; missed {len(missed)}, of which phonenumbers-valid "
        f"{sum(map(valid, missed))}"
    )
    print(f"random 8-12 digit ids phonenumbers-valid: {sum(map(valid, ids)) / len(ids):.2f}")
    print(
        f"dashed ids: shape {sum(map(phone_valid, dashed)) / len(dashed):.2f}, "
        f"phonenumbers {sum(map(valid, dashed)) / len(dashed):.2f}"
    )
    print(
        f"PhoneNumberMatcher (snippet's region): recall {true_positive / gold.sum():.2f}, "
        f"precision {true_positive / max(1, true_positive + false_positive):.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--presidio-n", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="interleaved rounds of the three scrubbers on the presidio texts (default: "
        "--repeat); one round of presidio on a million texts takes minutes",
    )
    parser.add_argument("--phone-study", action="store_true", help="only phone_study()")
    parser.add_argument("--profile-only", action="store_true", help="only the profiling times")
    args = parser.parse_args()
    if args.phone_study:
        phone_study()
        return
    if args.profile_only:
        demo_seconds, tables, columns = profile_demo()
        print(
            f"100-column table: {profile_100_columns():.2f} s; demo catalog ({tables} "
            f"tables, {columns} unclassified columns): {demo_seconds:.2f} s"
        )
        return
    rounds = args.rounds or args.repeat

    from presidio_anonymizer import AnonymizerEngine, BatchAnonymizerEngine

    from jupyter_gov.pii.detect import scan_array, spans

    data = texts(args.n)
    column = pa.array(data, pa.string())
    jg_seconds, scanned = timed(lambda: scan_array(column), args.repeat)
    jg_out = scanned.array.to_pylist()
    with_pii = sum(1 for i in range(args.n) if i % 3 == 0)

    m = min(args.presidio_n, args.n)
    subset = data[:m]
    print(f"jupyter-gov {args.n:,}: {jg_seconds:.1f} s", file=sys.stderr, flush=True)
    batch = BatchAnonymizerEngine(AnonymizerEngine())
    engine = AnonymizerEngine()
    #: presidio's spans per text, kept by the first end-to-end run (an append per text,
    #: inside its timing): the Batch engine is given them, so presidio's analyzer does not
    #: run a second, untimed time over a million texts.
    found: list[Any] = []

    def end_to_end() -> list[str]:
        out = []
        for text in subset:
            results = spans(text)
            if len(found) < m:
                found.append(results)
            out.append(engine.anonymize(text=text, analyzer_results=results).text)
        return out

    # Interleaved rounds on the same texts: on a shared machine the load changes from one
    # minute to the next, and a ratio of timings taken minutes apart would measure that.
    times: dict[str, list[float]] = {"e2e": [], "jg_m": [], "batch": []}
    outputs: dict[str, Any] = {}
    runs = {
        "e2e": end_to_end,
        "jg_m": lambda: scan_array(pa.array(subset, pa.string())).array.to_pylist(),
        "batch": lambda: list(batch.anonymize_list(subset, recognizer_results_list=found)),
    }
    for index in range(rounds):
        for key, run in runs.items():
            seconds, outputs[key] = timed(run, 1)
            print(f"round {index + 1}: {key} {seconds:.1f} s", file=sys.stderr, flush=True)
            times[key].append(seconds)
    jg_m_seconds, batch_seconds, e2e_seconds = (
        statistics.median(times[k]) for k in ("jg_m", "batch", "e2e")
    )
    e2e_out = outputs["e2e"]
    equal = jg_out[:m] == outputs["jg_m"] == outputs["batch"] == e2e_out
    mismatches = sum(a != b for a, b in zip(jg_out[:m], e2e_out, strict=True))
    profile_seconds = profile_100_columns()
    demo_seconds, demo_tables, demo_columns = profile_demo()

    rate = {
        "jg": args.n / jg_seconds,
        "jg_m": m / jg_m_seconds,
        "batch": m / batch_seconds,
        "e2e": m / e2e_seconds,
    }
    rows = [
        ("jupyter-gov `scan_array` (detect + checksums + replace)", args.n, jg_seconds, "jg"),
        ("jupyter-gov `scan_array`", m, jg_m_seconds, "jg_m"),
        ("presidio `BatchAnonymizerEngine`, spans given", m, batch_seconds, "batch"),
        ("presidio `AnalyzerEngine` + `AnonymizerEngine`", m, e2e_seconds, "e2e"),
    ]
    lines = ["| scrubber | texts | seconds (median) | values/s | jupyter-gov is |"]
    lines.append("|---|---:|---:|---:|---:|")
    for label, count, seconds, key in rows:
        ratio = "—" if key.startswith("jg") else f"{rate['jg_m'] / rate[key]:.1f}x faster"
        lines.append(f"| {label} | {count:,} | {seconds:.2f} | {rate[key]:,.0f} | {ratio} |")
    table = "\n".join(lines)
    scope = (
        f"all three scrub the same {m:,} texts"
        if m == args.n
        else f"presidio runs on the first {m:,} texts (at ~{rate['e2e']:,.0f} values/s a "
        f"million would take {args.n / rate['e2e'] / 60:.0f} minutes here)"
    )
    print(f"""## PII scrubbing: jupyter-gov (vectorized Arrow) vs presidio

`python bench/pii.py --n {args.n} --presidio-n {m} --repeat {args.repeat} --rounds {rounds}`
({time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}, {os.cpu_count()} cores, load average
{os.getloadavg()[0]:.1f} at the end): {args.n:,} texts of about 200 characters, {with_pii:,}
of them with one or two entities (e-mail, phone, card, IBAN, SSN, IPv4). jupyter-gov's
million: median of {args.repeat} runs. Then {scope}; the three scrubbers take turns on
those texts, {rounds} round(s), medians, and the ratios compare those interleaved timings.
Outputs equal on those {m:,} texts: **{equal}** ({mismatches} differing).

{table}

Profiling a 100-column table (10,000 rows; 500 sampled; 30 PII columns among e-mail,
phone and free-text ones) for `unclassified: auto`: **{profile_seconds:.2f} s** (median of 3;
one sample query and one vectorized scan of the 50,000 sampled values). The demo's first
statement under `unclassified: auto` profiles its catalog ({demo_tables} tables,
{demo_columns} unclassified columns) in **{demo_seconds:.2f} s** (median of 3).
""")


if __name__ == "__main__":
    main()
