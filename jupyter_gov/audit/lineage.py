"""OpenLineage for governed reads: which tables and columns a result came from, under what.

Two halves, so the engine never imports openlineage:

- :func:`describe` runs in the engine when a read succeeds (only when the policy has a
  lineage sink) and puts what lineage needs into the ``result`` event's ``detail``:
  the input tables, the output -> input column lineage (sqlglot's ``lineage`` over the
  statement as rewritten, so masks and row filters are traced back to the real columns),
  the masked columns with their mask kinds, the row filters and the job (notebook and cell,
  or the pipeline). Names only: never a value.
- :class:`OpenLineageSink` (``audit: {sinks: [{kind: openlineage, ...}]}``) turns each such
  event, as stored in the chain, into an OpenLineage ``RunEvent`` and sends it over HTTP
  (Marquez's ``/api/v1/lineage``) or appends it to a file, with openlineage-python's
  transports. It follows the audit sinks' protocol: built as ``OpenLineageSink(config,
  policy)``, then ``emit(event)`` and ``close()``.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import sys
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from jupyter_gov.errors import PolicyError

if TYPE_CHECKING:
    from jupyter_gov.connectors.base import Catalog
    from jupyter_gov.identity import Identity
    from jupyter_gov.plan import Plan
    from jupyter_gov.policy import Policy

#: The ``producer`` of every event and the prefix of the custom facets.
PRODUCER = "https://github.com/jupyter-gov/jupyter-gov"
FACET = "jupyterGov_governance"
_FACET_SCHEMA = f"{PRODUCER}/blob/main/docs/evidence.md#lineage"


# -- the engine's half: what a read's lineage is -------------------------------------------


def wanted(policy: Policy) -> bool:
    """Whether the policy sends lineage anywhere (only then does the engine compute it)."""
    sinks = (policy.data.get("audit") or {}).get("sinks") or ()
    return any(isinstance(s, Mapping) and s.get("kind") == "openlineage" for s in sinks)


def job_of(identity: Identity, cell: Any = None) -> dict[str, Any]:
    """The job a read belongs to: the notebook and cell, a pipeline, or the script.

    Jupyter sets ``JPY_SESSION_NAME`` to the notebook's path in its kernels; the magic
    passes the cell's execution count, and a Python API call in a kernel takes the count of
    the shell already running it (IPython is only looked up, never imported). A service
    identity is a pipeline, named by ``JUPYTER_GOV_PIPELINE`` or else by the service.
    """
    if identity.kind == "service":
        return {"pipeline": os.environ.get("JUPYTER_GOV_PIPELINE") or identity.subject}
    shell = None
    ipython = sys.modules.get("IPython")
    if ipython is not None:
        shell = getattr(ipython, "get_ipython", lambda: None)()
    if cell is None and shell is not None:
        cell = getattr(shell, "execution_count", None)
    notebook = os.environ.get("JPY_SESSION_NAME")
    if notebook:
        return {"notebook": notebook, "cell": cell}
    if shell is not None and "ipykernel" in sys.modules:
        return {"notebook": "unnamed-notebook", "cell": cell}
    script = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"
    return {"script": script, "cell": cell}


def describe(plan: Plan, catalog: Catalog, job: Mapping[str, Any]) -> dict[str, Any] | None:
    """The lineage of a plan's last read, for the ``result`` event's ``detail``.

    None when the plan reads no catalog table (a scratch-only or write statement). Column
    lineage that sqlglot cannot follow is left out (the inputs stay): lineage is evidence,
    and a guess is worse than a gap.
    """
    reads = [s for s in plan.statements if s.info.is_read]
    if not reads:
        return None
    statement = reads[-1]
    inputs: dict[str, dict[str, Any]] = {}
    for ref in statement.info.tables:
        if ref.kind != "catalog":
            continue
        entry = catalog.get(ref.name, ref.schema)
        if entry is not None:
            inputs[f"{entry.schema}.{entry.name}".lower()] = {
                "schema": entry.schema,
                "table": entry.name,
            }
    if not inputs:
        return None
    columns = _column_lineage(statement.info.expression, catalog, plan.dialect)
    read: dict[str, dict[str, str]] = {}  # input -> the columns lineage traced, with types
    for sources in columns.values():
        for schema, table, column in sources:
            entry = catalog.get(table, schema)
            if entry is not None and column in entry.columns:
                key = f"{schema}.{table}".lower()
                read.setdefault(key, {})[column] = entry.columns[column].sql()
    for key, described in inputs.items():
        described["fields"] = dict(sorted(read.get(key, {}).items()))
    return {
        "inputs": list(inputs.values()),
        "columns": columns,
        "masked": dict(plan.masked_columns),
        "row_filters": list(plan.row_filters),
        "job": dict(job),
    }


def tags_touched(plan: Plan, policy: Policy) -> dict[str, list[str]] | None:
    """Classification tags a plan reads, masked and unmasked (for the compliance report).

    Masked: the tags of every masked column (a bare column name is matched against the
    catalog tables the statement reads). Unmasked: the tags the rewrite saw projected raw.
    None when the plan touches no classified column.
    """
    masked: set[str] = set()
    unmasked: set[str] = set()
    for statement in plan.statements:
        unmasked |= set(statement.unmasked_tags)
        tables = [r for r in statement.info.tables if r.kind == "catalog"]
        for key in statement.masked_columns:
            table, _, column = key.rpartition(".")
            for ref in tables if not table else [r for r in tables if r.name == table]:
                masked |= set(policy.tags_for(ref.name, column, ref.schema))
    if not masked and not unmasked:
        return None
    return {"masked": sorted(masked), "unmasked": sorted(unmasked)}


def _column_lineage(tree: Any, catalog: Catalog, dialect: str) -> dict[str, list[list[str]]]:
    """Output column -> ``[schema, table, column]`` of every catalog column it derives from."""
    from sqlglot import exp
    from sqlglot.errors import SqlglotError
    from sqlglot.lineage import lineage

    try:
        nodes = lineage(
            None,
            tree,
            schema=catalog.mapping(),
            dialect=dialect,
            db=catalog.default_schema or None,
        )
    except (SqlglotError, KeyError, ValueError, AttributeError, TypeError, RecursionError):
        return {}
    out: dict[str, list[list[str]]] = {}
    for name, node in nodes.items():
        found: dict[tuple[str, str, str], None] = {}
        for leaf in node.walk():
            if not isinstance(leaf.source, exp.Table) or leaf.downstream:
                continue
            entry = catalog.get(leaf.source.name, leaf.source.db or None)
            if entry is None:
                continue
            column = exp.to_column(leaf.name).name
            column = next((c for c in entry.columns if c.lower() == column.lower()), column)
            found[(entry.schema, entry.name, column)] = None
        out[name] = [list(key) for key in found]
    return out


# -- the sink's half: RunEvents --------------------------------------------------------------


def namespace_of(policy: Policy, connection: str | None) -> str:
    """A dataset namespace for a connection: scheme, host and port, never credentials.

    ``postgresql://user:pw@db:5432/sales`` -> ``postgresql://db:5432``; a file-backed
    engine (DuckDB, SQLite) has no host and is named by the policy's connection name.
    """
    url = ""
    if connection and connection in policy.connections:
        url = policy.connections[connection].url
    parts = urlsplit(url)
    scheme = (parts.scheme or "jupyter-gov").split("+", 1)[0]
    try:
        host = parts.hostname
        port = parts.port
    except ValueError:  # a ${VAR} in the port: keep the host only
        host, port = parts.hostname, None
    if host:
        return f"{scheme}://{host}" + (f":{port}" if port else "")
    return f"{scheme}://{connection or 'scratch'}"


class OpenLineageSink:
    """An audit sink that sends a ``RunEvent`` for every governed read.

    Config: ``url`` (an OpenLineage HTTP endpoint such as Marquez; ``endpoint`` defaults to
    ``api/v1/lineage``, ``timeout`` to 5 s, ``api_key_env`` names a variable holding a
    bearer key) or ``path`` (a file, one JSON event per line); ``namespace`` names the job
    namespace (default ``jupyter-gov``).
    """

    kind = "openlineage"

    def __init__(self, config: Mapping[str, Any], policy: Policy) -> None:
        from openlineage.client import OpenLineageClient
        from openlineage.client.transport.file import FileConfig, FileTransport
        from openlineage.client.transport.http import (
            ApiKeyTokenProvider,
            HttpConfig,
            HttpTransport,
            TokenProvider,
        )

        self.policy = policy
        self.namespace = str(config.get("namespace") or "jupyter-gov")
        url, path = config.get("url"), config.get("path")
        if bool(url) == bool(path):
            raise PolicyError(
                "An openlineage audit sink needs exactly one of url (an OpenLineage HTTP "
                "endpoint) or path (a file)."
            )
        if url:
            if urlsplit(str(url)).scheme not in ("http", "https"):
                raise PolicyError("An openlineage sink's url must be an http(s) URL.")
            key_env = config.get("api_key_env")
            key = os.environ.get(str(key_env), "") if key_env else ""
            transport: Any = HttpTransport(
                HttpConfig(
                    url=str(url),
                    endpoint=str(config.get("endpoint") or "api/v1/lineage"),
                    timeout=float(config.get("timeout") or 5.0),
                    auth=ApiKeyTokenProvider({"api_key": key}) if key else TokenProvider({}),
                    retry={"total": 0},
                )
            )
        else:
            transport = FileTransport(
                FileConfig(log_file_path=os.path.expanduser(str(path)), append=True)
            )
        self._client = OpenLineageClient(transport=transport)

    def emit(self, event: Mapping[str, Any]) -> None:
        """Send the RunEvent of a read's ``result`` event; every other event is ignored."""
        run_event = self.run_event(event)
        if run_event is not None:
            self._client.emit(run_event)

    def close(self) -> None:
        self._client.close(timeout=5.0)

    def run_event(self, event: Mapping[str, Any]) -> Any:
        """The OpenLineage ``RunEvent`` for one stored audit event, or None.

        The dispatcher hands events exactly as hashed (JSON fields still encoded); a
        reader's events come decoded: both are accepted.
        """
        if event.get("kind") != "result":
            return None
        event = _decoded(event)
        detail = event.get("detail") or {}
        described = detail.get("lineage")
        if not described:
            return None
        from openlineage.client.event_v2 import (
            InputDataset,
            Job,
            OutputDataset,
            Run,
            RunEvent,
            RunState,
        )
        from openlineage.client.facet_v2 import (
            column_lineage_dataset,
            error_message_run,
            job_type_job,
            schema_dataset,
            sql_job,
        )

        source = namespace_of(self.policy, event.get("connection"))
        masked: Mapping[str, str] = described.get("masked") or {}
        job_name = _job_name(described.get("job") or {})
        inputs = [
            InputDataset(
                namespace=source,
                name=f"{i['schema']}.{i['table']}",
                facets={
                    "schema": schema_dataset.SchemaDatasetFacet(
                        fields=[
                            schema_dataset.SchemaDatasetFacetFields(name=name, type=type_)
                            for name, type_ in (i.get("fields") or {}).items()
                        ]
                    )
                }
                if i.get("fields")
                else {},
            )
            for i in described.get("inputs") or ()
        ]
        fields = {
            output: column_lineage_dataset.Fields(
                inputFields=[
                    column_lineage_dataset.InputField(
                        namespace=source,
                        name=f"{schema}.{table}",
                        field=column,
                        transformations=[_transformation(masked, table, column)],
                    )
                    for schema, table, column in sources
                ]
            )
            for output, sources in (described.get("columns") or {}).items()
        }
        outputs = [
            OutputDataset(
                namespace=self.namespace,
                name=f"{job_name}/result",
                facets={"columnLineage": column_lineage_dataset.ColumnLineageDatasetFacet(fields)},
            )
        ]
        run_facets: dict[str, Any] = {FACET: self._governance_facet(event, described)}
        if event.get("error"):
            run_facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
                message=str(event["error"]), programmingLanguage="SQL"
            )
        job_facets: dict[str, Any] = {
            "jobType": job_type_job.JobTypeJobFacet(
                processingType="BATCH",
                integration="JUPYTER_GOV",
                jobType="PIPELINE" if "pipeline" in (described.get("job") or {}) else "QUERY",
            )
        }
        if event.get("statement"):  # literals already replaced by ? in the audit
            job_facets["sql"] = sql_job.SQLJobFacet(query=str(event["statement"]))
        return RunEvent(
            eventType=RunState.FAIL if event.get("error") else RunState.COMPLETE,
            eventTime=dt.datetime.fromtimestamp(float(event["ts"]), dt.UTC).isoformat(),
            run=Run(runId=_run_id(event), facets=run_facets),
            job=Job(namespace=self.namespace, name=job_name, facets=job_facets),
            inputs=inputs,
            outputs=outputs,
            producer=PRODUCER,
        )

    def _governance_facet(self, event: Mapping[str, Any], described: Mapping[str, Any]) -> Any:
        detail = event.get("detail") or {}
        return _facet_class()(
            subject=event.get("subject"),
            identityKind=event.get("identity_kind"),
            verified=bool(event.get("verified")),
            onBehalfOf=detail.get("on_behalf_of"),
            roles=list(event.get("roles") or ()),
            connection=event.get("connection"),
            policy={
                "name": event.get("policy_name"),
                "version": event.get("policy_version"),
                "hash": event.get("policy_hash"),
            },
            maskedColumns=dict(described.get("masked") or {}),
            rowFilters=list(described.get("row_filters") or ()),
            job=dict(described.get("job") or {}),
            rows=event.get("rows"),
            purpose=event.get("purpose"),
            audit={
                "id": event.get("id"),
                "queryId": event.get("query_id"),
                "fingerprint": event.get("fingerprint"),
                "prevHash": event.get("prev_hash"),
                "hash": event.get("hash"),
            },
            producer=PRODUCER,
        )


@functools.cache
def _facet_class() -> type:
    """The ``jupyterGov_governance`` run facet (built on first use: openlineage loads late)."""
    import attr
    from openlineage.client.facet_v2 import RunFacet

    names = (
        "subject identityKind verified onBehalfOf roles connection policy maskedColumns "
        "rowFilters job rows purpose audit"
    ).split()
    facet = attr.make_class(
        "GovernanceRunFacet",
        {name: attr.field(default=None, kw_only=True) for name in names},
        bases=(RunFacet,),
    )
    facet._get_schema = staticmethod(lambda: _FACET_SCHEMA)
    return facet


def _decoded(event: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(event)
    for name in ("roles", "rules", "reasons", "masked_columns", "detail"):
        if isinstance(out.get(name), str):
            try:
                out[name] = json.loads(out[name])
            except ValueError:
                out[name] = None
    return out


def _job_name(job: Mapping[str, Any]) -> str:
    if job.get("pipeline"):
        return f"pipeline:{job['pipeline']}"
    where = job.get("notebook") or job.get("script") or "session"
    return f"{where}#cell-{job['cell']}" if job.get("cell") is not None else str(where)


def _transformation(masked: Mapping[str, str], table: str, column: str) -> Any:
    """DIRECT, flagged as masking (with the mask's kind) when the caller saw a mask."""
    from openlineage.client.facet_v2 import column_lineage_dataset

    label = masked.get(f"{table}.{column}") or masked.get(column)
    return column_lineage_dataset.Transformation(
        type="DIRECT",
        subtype="TRANSFORMATION" if label else "IDENTITY",
        description=f"masked: {label}" if label else None,
        masking=bool(label),
    )


def _run_id(event: Mapping[str, Any]) -> str:
    """The run is the statement: its query id (a UUID4 in hex) as a UUID."""
    try:
        return str(uuid.UUID(hex=str(event.get("query_id"))))
    except ValueError:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"jupyter-gov:{event.get('query_id')}"))


#: The sink under its kind, for direct use and tests. The audit sinks' registry
#: (``jupyter_gov.audit.sinks``) lists ``openlineage`` among its built-in kinds and its
#: ``jupyter_gov.audit_sinks`` entry points, pointing at :class:`OpenLineageSink`.
SINKS = {OpenLineageSink.kind: OpenLineageSink}
