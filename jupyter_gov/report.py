"""The compliance report: what the audit chain says happened in a window, for auditors.

Built only from the audit store's reader interface (:class:`~jupyter_gov.audit.AuditReader`:
``events``, ``stats``, ``verify``, ``head``), so it reads a SQLite file, the team store or
a gateway's client alike. Sections: who read which classification tag on which connection
(masked or not) and how often; unmasking approvals and their latency; denied attempts by
rule; break-glass uses; write approvals; the chain's verification and checkpoints.

Renders as self-contained HTML (inline SVG charts, light and dark through
``prefers-color-scheme``, no external asset), Markdown, CSV (one tidy table with a
``section`` column, for spreadsheets) or JSON. Holds names, counts and times only: the
audit stores statements with literals removed and never a row value.
"""

from __future__ import annotations

import csv
import datetime as dt
import html
import io
import json
import re
import statistics
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from jupyter_gov.audit.store import AuditReader
from jupyter_gov.errors import UsageError

FORMATS = ("html", "md", "csv", "json")
_SINCE = re.compile(r"^\s*(\d{1,6})\s*([dhmw])\s*$")
_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_PAGE = 5000
_WRITES = ("insert", "update", "delete", "merge", "create", "drop", "alter", "truncate")


def parse_since(text: str, now: float | None = None) -> float:
    """``30d``, ``12h``, ``90m`` or ``2w`` before now, as epoch seconds."""
    match = _SINCE.match(text or "")
    if not match:
        raise UsageError(f"--since takes a duration such as 30d, 12h or 90m, not {text[:40]!r}.")
    return (time.time() if now is None else now) - int(match[1]) * _UNITS[match[2]]


@dataclass
class Report:
    """Every section of the report, as plain rows (see :func:`build_report`)."""

    since: float
    until: float
    generated_at: float
    store: str
    totals: dict[str, int] = field(default_factory=dict)
    pii_reads: list[dict[str, Any]] = field(default_factory=list)
    unmask_approvals: list[dict[str, Any]] = field(default_factory=list)
    denials: list[dict[str, Any]] = field(default_factory=list)
    break_glass: list[dict[str, Any]] = field(default_factory=list)
    write_approvals: list[dict[str, Any]] = field(default_factory=list)
    chain: dict[str, Any] = field(default_factory=dict)
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    daily: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def latency(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, float | None]:
        """Median and longest seconds from request to decision."""
        values = [r["latency_s"] for r in rows if r.get("latency_s") is not None]
        return {
            "median_s": round(statistics.median(values), 1) if values else None,
            "max_s": round(max(values), 1) if values else None,
        }


def _events(store: AuditReader, since: float, until: float) -> Iterable[dict[str, Any]]:
    offset = 0
    while True:
        page = store.events(
            limit=_PAGE, offset=offset, newest_first=False, since=since, until=until
        )
        yield from page
        if len(page) < _PAGE:
            return
        offset += _PAGE


def build_report(
    store: AuditReader,
    since: float,
    until: float | None = None,
    checkpoints: Sequence[Mapping[str, Any]] = (),
) -> Report:
    """Read the window ``since..until`` (epoch seconds) and verify the whole chain."""
    until = time.time() if until is None else until
    report = Report(since=since, until=until, generated_at=time.time(), store=_store_name(store))
    reads: Counter[tuple[str, str, str, str]] = Counter()
    rows_by_query: dict[str, float] = {}
    allowed_reads: dict[str, tuple[str, str, dict[str, Any]]] = {}
    denials: Counter[tuple[str, str]] = Counter()
    denial_users: dict[tuple[str, str], set[str]] = {}
    approvals: dict[str, dict[str, Any]] = {}
    kinds: Counter[str] = Counter()
    subjects: set[str] = set()
    for event in _events(store, since, until):
        kind = event["kind"]
        kinds[kind] += 1
        if event.get("subject"):
            subjects.add(event["subject"])
        detail = event.get("detail") or {}
        if kind == "decision" and event.get("decision") == "allow" and detail.get("tags"):
            allowed_reads[str(event.get("query_id"))] = (
                event.get("subject") or "?",
                event.get("connection") or "?",
                detail["tags"],
            )
        elif kind == "decision" and event.get("decision") == "deny":
            for rule in event.get("rules") or ["(none)"]:
                key = (str(rule), event.get("connection") or "?")
                denials[key] += 1
                denial_users.setdefault(key, set()).add(event.get("subject") or "?")
        elif kind == "result" and not event.get("error"):
            rows_by_query[str(event.get("query_id"))] = float(event.get("rows") or 0)
        if kind.startswith("approval_") or kind == "break_glass":
            _fold_approval(approvals, event)
    rows_per_key: Counter[tuple[str, str, str, str]] = Counter()
    for query_id, (subject, connection, tags) in allowed_reads.items():
        for state in ("unmasked", "masked"):
            for tag in tags.get(state) or ():
                reads[(subject, connection, tag, state)] += 1
                rows_per_key[(subject, connection, tag, state)] += int(
                    rows_by_query.get(query_id, 0)
                )
    report.pii_reads = [
        {
            "subject": subject,
            "connection": connection,
            "tag": tag,
            "state": state,
            "reads": n,
            "rows": rows_per_key[(subject, connection, tag, state)],
        }
        for (subject, connection, tag, state), n in sorted(reads.items())
    ]
    report.denials = [
        {
            "rule": rule,
            "connection": connection,
            "attempts": n,
            "subjects": ", ".join(sorted(denial_users[(rule, connection)])),
        }
        for (rule, connection), n in sorted(denials.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
    for request in approvals.values():
        if request["break_glass"]:
            report.break_glass.append(request)
        elif request["unmask"]:
            report.unmask_approvals.append(request)
        if not request["break_glass"] and request["write"]:
            report.write_approvals.append(request)
    report.totals = {
        "events": sum(kinds.values()),
        "statements": kinds["attempt"],
        "allowed": _count_decisions(store, since, until, "allow"),
        "denied": _count_decisions(store, since, until, "deny"),
        "approval_required": _count_decisions(store, since, until, "approval_required"),
        "identities": len(subjects),
    }
    report.daily = _daily(store, since, until)
    verified = store.verify()
    report.chain = {**verified.to_dict(), "checked_at": time.time()}
    head_id, head_hash = store.head()
    report.chain["current_checkpoint"] = {
        "count": verified.rows,
        "last_id": head_id,
        "head": head_hash,
    }
    for checkpoint in checkpoints:
        result = store.verify(checkpoint)
        report.checkpoints.append(
            {
                "last_id": checkpoint.get("last_id"),
                "count": checkpoint.get("count"),
                "head": str(checkpoint.get("head", ""))[:16],
                "ok": result.ok,
                "reason": result.reason,
            }
        )
    return report


def _store_name(store: AuditReader) -> str:
    return str(getattr(store, "path", "") or type(store).__name__)


def _count_decisions(store: AuditReader, since: float, until: float, decision: str) -> int:
    return store.count(kinds=("decision",), decision=decision, since=since, until=until)


def _daily(store: AuditReader, since: float, until: float) -> list[dict[str, Any]]:
    """Decisions per UTC day, zero-filled, for the chart."""
    day = 86400
    counts: dict[int, Counter[str]] = {
        slot: Counter() for slot in range(int(since // day), int(until // day) + 1)
    }
    for row in store.stats(bucket=day, kinds=("decision",), since=since, until=until):
        slot = row.start // day
        if slot in counts and row.decision:
            counts[slot][row.decision] += row.count
    return [
        {
            "day": _date(slot * day),
            "allow": c["allow"],
            "deny": c["deny"],
            "approval_required": c["approval_required"],
        }
        for slot, c in sorted(counts.items())
    ]


def _fold_approval(approvals: dict[str, dict[str, Any]], event: Mapping[str, Any]) -> None:
    """One row per request, filled in as its events go by (requested -> decided -> used)."""
    detail = event.get("detail") or {}
    request_id = detail.get("approval_id")
    if not request_id:
        return
    statement = str(event.get("statement") or "")
    row = approvals.setdefault(
        request_id,
        {
            "id": request_id,
            "requester": detail.get("requester"),
            "connection": event.get("connection"),
            "rules": ", ".join(event.get("rules") or ()),
            "unmask": ", ".join(detail.get("unmask") or ()),
            "write": statement.lstrip("( ").split(" ", 1)[0].lower() in _WRITES,
            "break_glass": bool(detail.get("break_glass")),
            "justification": str(event.get("purpose") or "")[:200],
            "requested_at": None,
            "decided_at": None,
            "decided_by": None,
            "state": "pending",
            "uses": 0,
            "latency_s": None,
        },
    )
    kind = event["kind"]
    if kind in ("approval_requested", "break_glass"):
        row["requested_at"] = event.get("ts")
        row["requester"] = event.get("subject") or row["requester"]
        row["state"] = "break-glass" if kind == "break_glass" else "pending"
    elif kind in ("approval_approved", "approval_denied"):
        row["decided_at"] = event.get("ts")
        row["decided_by"] = event.get("subject")
        row["state"] = kind.removeprefix("approval_")
        if row["requested_at"] is not None and event.get("ts") is not None:
            row["latency_s"] = round(float(event["ts"]) - float(row["requested_at"]), 3)
    elif kind in ("approval_expired", "approval_revoked"):
        row["state"] = kind.removeprefix("approval_")
    elif kind == "approval_used":
        row["uses"] = int(detail.get("uses") or row["uses"] + 1)


# -- rendering -----------------------------------------------------------------------------


def render(report: Report, fmt: str) -> str:
    if fmt == "html":
        return to_html(report)
    if fmt == "md":
        return to_markdown(report)
    if fmt == "csv":
        return to_csv(report)
    if fmt == "json":
        return json.dumps(report.to_dict(), default=str)
    raise UsageError(f"Unknown report format {fmt[:20]!r}; use one of {', '.join(FORMATS)}.")


def _date(ts: float | None) -> str:
    if ts is None:
        return ""
    return dt.datetime.fromtimestamp(float(ts), dt.UTC).strftime("%Y-%m-%d")


def _time(ts: float | None) -> str:
    if ts is None:
        return ""
    return dt.datetime.fromtimestamp(float(ts), dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _seconds(value: float | None) -> str:
    if value is None:
        return ""
    if value < 120:
        return f"{value:.0f} s"
    if value < 7200:
        return f"{value / 60:.0f} min"
    return f"{value / 3600:.1f} h"


#: Each table of the report: (section id, title, [(column key, heading)], rows getter).
def _tables(report: Report) -> list[tuple[str, str, list[tuple[str, str]], list[dict[str, Any]]]]:
    approval_columns = [
        ("id", "request"),
        ("requester", "requester"),
        ("connection", "connection"),
        ("unmask", "unmask"),
        ("rules", "rules"),
        ("state", "state"),
        ("decided_by", "decided by"),
        ("latency", "latency"),
        ("uses", "uses"),
    ]

    def approval_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{**r, "latency": _seconds(r.get("latency_s"))} for r in rows]

    return [
        (
            "pii_reads",
            "Reads of classified data, by identity, connection and tag",
            [
                ("subject", "identity"),
                ("connection", "connection"),
                ("tag", "tag"),
                ("state", "seen"),
                ("reads", "statements"),
                ("rows", "rows returned"),
            ],
            report.pii_reads,
        ),
        (
            "unmask_approvals",
            "Unmasking approvals",
            approval_columns,
            approval_rows(report.unmask_approvals),
        ),
        (
            "denials",
            "Denied attempts by rule",
            [
                ("rule", "rule"),
                ("connection", "connection"),
                ("attempts", "attempts"),
                ("subjects", "identities"),
            ],
            report.denials,
        ),
        (
            "break_glass",
            "Break-glass uses",
            [
                ("id", "request"),
                ("requester", "identity"),
                ("connection", "connection"),
                ("requested_at_text", "at"),
                ("justification", "justification"),
                ("uses", "uses"),
            ],
            [{**r, "requested_at_text": _time(r.get("requested_at"))} for r in report.break_glass],
        ),
        (
            "write_approvals",
            "Write approvals",
            approval_columns,
            approval_rows(report.write_approvals),
        ),
        (
            "checkpoints",
            "Checkpoints checked",
            [
                ("last_id", "last event"),
                ("count", "events"),
                ("head", "head hash"),
                ("ok", "holds"),
                ("reason", "why not"),
            ],
            report.checkpoints,
        ),
    ]


def _chain_sentence(report: Report) -> str:
    chain = report.chain
    if chain.get("ok"):
        return (
            f"Chain intact: {chain.get('rows', 0):,} events verified from the first, "
            f"head {str(chain.get('head', ''))[:16]}."
        )
    return (
        f"Chain BROKEN at event {chain.get('broken_at')}: {chain.get('reason')}. "
        "Nothing after that point can be relied on."
    )


def _empty(section: str) -> str:
    if section == "checkpoints":
        return "No checkpoint was given (keep the one above elsewhere; pass it next time)."
    return "None in this window."


def to_markdown(report: Report) -> str:
    def cell(value: Any) -> str:
        return str("" if value is None else value).replace("|", "\\|").replace("\n", " ")

    lines = [
        "# jupyter-gov compliance report",
        "",
        f"Window: {_time(report.since)} to {_time(report.until)} · store {report.store} · "
        f"generated {_time(report.generated_at)}",
        "",
        "## Audit chain",
        "",
        _chain_sentence(report),
        "",
        "Checkpoint to keep elsewhere: `"
        + json.dumps(report.chain.get("current_checkpoint"), sort_keys=True)
        + "`",
        "",
        "## Totals",
        "",
        "| " + " | ".join(report.totals) + " |",
        "|" + "---|" * len(report.totals),
        "| " + " | ".join(str(v) for v in report.totals.values()) + " |",
    ]
    for section, title, columns, rows in _tables(report):
        lines += ["", f"## {title}", ""]
        if not rows:
            lines.append(_empty(section))
            continue
        lines.append("| " + " | ".join(h for _, h in columns) + " |")
        lines.append("|" + "---|" * len(columns))
        lines += ["| " + " | ".join(cell(r.get(k)) for k, _ in columns) + " |" for r in rows]
        if section == "unmask_approvals":
            latency = report.latency(report.unmask_approvals)
            lines += [
                "",
                f"Latency from request to decision: median "
                f"{_seconds(latency['median_s']) or 'n/a'}, longest "
                f"{_seconds(latency['max_s']) or 'n/a'}.",
            ]
    return "\n".join([*lines, ""])


def to_csv(report: Report) -> str:
    """One table: ``section`` then every column any section uses (empty where unused)."""
    sections = _tables(report)
    chain_row = {
        "ok": report.chain.get("ok"),
        "count": report.chain.get("rows"),
        "head": report.chain.get("head"),
        "reason": report.chain.get("reason"),
    }
    keys: list[str] = []
    for _, _, columns, _ in sections:
        keys += [k for k, _ in columns if k not in keys]
    for extra in ("latency_s", "requested_at", "decided_at"):
        if extra not in keys:
            keys.append(extra)
    out = io.StringIO()
    writer = csv.DictWriter(
        out, fieldnames=["section", *keys], extrasaction="ignore", lineterminator="\r\n"
    )
    writer.writeheader()
    writer.writerow({"section": "chain", **chain_row})
    for name, value in report.totals.items():
        writer.writerow({"section": f"total:{name}", "count": value})
    for section, _, _, rows in sections:
        for row in rows:
            writer.writerow({"section": section, **{k: _csv_value(row.get(k), k) for k in keys}})
    return out.getvalue()


def _csv_value(value: Any, key: str = "") -> Any:
    """Cells a spreadsheet will not run as a formula (CSV injection)."""
    if key in ("requested_at", "decided_at"):
        return _time(value)
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


# -- HTML ----------------------------------------------------------------------------------

_CSS = """
:root { color-scheme: light dark; --fg:#1f2328; --bg:#ffffff; --muted:#59636e; --line:#d1d9e0;
  --allow:#1a7f37; --deny:#cf222e; --approval:#9a6700; --bar:#0969da; --bad-bg:#ffebe9; }
@media (prefers-color-scheme: dark) {
  :root { --fg:#e6edf3; --bg:#0d1117; --muted:#9198a1; --line:#3d444d;
    --allow:#3fb950; --deny:#f85149; --approval:#d29922; --bar:#4493f8; --bad-bg:#3c1618; } }
body { font: 14px/1.45 system-ui, sans-serif; color: var(--fg); background: var(--bg);
  margin: 2rem auto; max-width: 72rem; padding: 0 1rem; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.15rem; margin-top: 2rem; }
.muted { color: var(--muted); }
table { border-collapse: collapse; width: 100%; margin: .5rem 0; }
th, td { border-bottom: 1px solid var(--line); padding: .3rem .5rem; text-align: left; }
th { font-weight: 600; }
.ok { color: var(--allow); font-weight: 600; } .bad { color: var(--deny); font-weight: 600; }
.chain.bad { background: var(--bad-bg); padding: .5rem; }
.totals { display: flex; gap: 1.5rem; flex-wrap: wrap; }
.totals div { border: 1px solid var(--line); border-radius: 6px; padding: .5rem 1rem; }
.totals b { display: block; font-size: 1.3rem; }
svg text { fill: var(--fg); font-size: 11px; }
svg .axis { stroke: var(--line); }
svg .allow { fill: var(--allow); } svg .deny { fill: var(--deny); }
svg .approval_required { fill: var(--approval); } svg .bar { fill: var(--bar); }
"""


def _bar_chart(title: str, items: Sequence[tuple[str, int]]) -> str:
    """Horizontal bars, one per label; text and values drawn in the SVG itself."""
    if not items:
        return ""
    top = max(v for _, v in items) or 1
    height = 22 * len(items) + 10
    parts = [
        f'<svg role="img" aria-label="{html.escape(title)}" width="640" height="{height}" '
        f'viewBox="0 0 640 {height}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{html.escape(title)}</title>"
    ]
    for index, (label, value) in enumerate(items):
        y = 5 + index * 22
        width = max(1, round(380 * value / top))
        parts.append(
            f'<text x="0" y="{y + 14}">{html.escape(label[:40])}</text>'
            f'<rect class="bar" x="220" y="{y}" width="{width}" height="16"/>'
            f'<text x="{226 + width}" y="{y + 13}">{value:,}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _daily_chart(daily: Sequence[Mapping[str, Any]]) -> str:
    """Stacked columns per day: allowed, needing approval, denied."""
    if not daily:
        return ""
    series = ("allow", "approval_required", "deny")
    top = max(sum(int(d[s]) for s in series) for d in daily) or 1
    width, height, left = 640, 160, 30
    step = (width - left) / len(daily)
    bar = max(1.0, step * 0.8)
    parts = [
        f'<svg role="img" aria-label="Decisions per day" width="{width}" height="{height + 20}" '
        f'viewBox="0 0 {width} {height + 20}" xmlns="http://www.w3.org/2000/svg">'
        "<title>Decisions per day (allowed, needing approval, denied)</title>"
        f'<line class="axis" x1="{left}" y1="{height}" x2="{width}" y2="{height}"/>'
        f'<text x="0" y="12">{top:,}</text><text x="0" y="{height}">0</text>'
    ]
    for index, day in enumerate(daily):
        x = left + index * step
        y = float(height)
        for name in series:
            value = int(day[name])
            if not value:
                continue
            h = (height - 10) * value / top
            y -= h
            parts.append(
                f'<rect class="{name}" x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" '
                f'height="{h:.1f}"><title>{day["day"]}: {value:,} {name}</title></rect>'
            )
    first, last = daily[0]["day"], daily[-1]["day"]
    parts.append(
        f'<text x="{left}" y="{height + 15}">{first}</text>'
        f'<text x="{width}" y="{height + 15}" text-anchor="end">{last}</text></svg>'
    )
    return "".join(parts)


def to_html(report: Report) -> str:
    """One self-contained page: inline CSS and SVG, no script, no external asset."""
    esc = html.escape
    chain_ok = bool(report.chain.get("ok"))
    body = [
        "<h1>jupyter-gov compliance report</h1>",
        f'<p class="muted">Window {esc(_time(report.since))} to {esc(_time(report.until))}'
        f" · store {esc(report.store)} · generated {esc(_time(report.generated_at))}</p>",
        f'<p class="chain {"ok" if chain_ok else "bad"}" id="chain">'
        f"{esc(_chain_sentence(report))}</p>",
        '<p class="muted">Checkpoint to keep elsewhere: <code>'
        + esc(json.dumps(report.chain.get("current_checkpoint"), sort_keys=True))
        + "</code></p>",
        '<div class="totals">'
        + "".join(
            f"<div><b>{value:,}</b>{esc(name.replace('_', ' '))}</div>"
            for name, value in report.totals.items()
        )
        + "</div>",
        "<h2>Decisions per day</h2>",
        _daily_chart(report.daily),
    ]
    tag_counts: Counter[str] = Counter()
    for row in report.pii_reads:
        tag_counts[f"{row['tag']} ({row['state']})"] += int(row["reads"])
    rule_counts = [(r["rule"], int(r["attempts"])) for r in report.denials]
    charts = {
        "pii_reads": _bar_chart("Statements reading each tag", tag_counts.most_common(15)),
        "denials": _bar_chart("Denied attempts by rule", rule_counts[:15]),
    }
    for section, title, columns, rows in _tables(report):
        body.append(f'<h2 id="{section}">{esc(title)}</h2>')
        body.append(charts.get(section, ""))
        if not rows:
            body.append(f'<p class="muted">{esc(_empty(section))}</p>')
            continue
        head = "".join(f"<th>{esc(h)}</th>" for _, h in columns)
        cells = "".join(
            "<tr>" + "".join(f"<td>{esc(_text(r.get(k)))}</td>" for k, _ in columns) + "</tr>"
            for r in rows
        )
        body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{cells}</tbody></table>")
        if section == "unmask_approvals":
            latency = report.latency(report.unmask_approvals)
            body.append(
                f'<p class="muted">Latency from request to decision: median '
                f"{esc(_seconds(latency['median_s']) or 'n/a')}, longest "
                f"{esc(_seconds(latency['max_s']) or 'n/a')}.</p>"
            )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>jupyter-gov compliance report</title>"
        f"<style>{_CSS}</style></head><body>{''.join(body)}</body></html>\n"
    )
