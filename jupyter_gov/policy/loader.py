"""Read a policy file and validate it against the published JSON Schema.

Errors name the file, line and column of the offending value, so a typo in a 200-line
policy is one glance away. A policy that does not validate is never used: the engine
refuses to run anything under it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from jupyter_gov.errors import PolicyError

DEMO_POLICY = "demo"


@cache
def schema() -> dict[str, Any]:
    """The published JSON Schema for policy files."""
    return json.loads(resources.files("jupyter_gov.policy").joinpath("schema.json").read_text())


def demo_policy_text() -> str:
    return resources.files("jupyter_gov.policy").joinpath("demo.yaml").read_text()


def read_policy_source(source: str | Path | None) -> tuple[str, str]:
    """Return ``(text, origin)`` for a path, ``None``/``"demo"`` (the built-in demo)."""
    if source is None or str(source) == DEMO_POLICY:
        return demo_policy_text(), "<built-in demo policy>"
    path = Path(source).expanduser()
    try:
        return path.read_text(), str(path)
    except FileNotFoundError as error:
        raise PolicyError(f"Policy file {path} does not exist; check the path.") from error
    except OSError as error:
        raise PolicyError(f"Policy file {path} cannot be read ({error.strerror}).") from error


def parse_policy(text: str, origin: str = "<policy>") -> dict[str, Any]:
    """Parse YAML (JSON is YAML too) and validate; raise :class:`PolicyError` on the first error."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{origin}:{mark.line + 1}:{mark.column + 1}" if mark else origin
        problem = getattr(error, "problem", None) or str(error)
        raise PolicyError(f"{where}: the policy is not valid YAML ({problem}).") from error
    if not isinstance(data, dict):
        raise PolicyError(f"{origin}: a policy must be a mapping with version, name, roles, ...")
    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: (len(e.absolute_path), e.path))
    if errors:
        error = jsonschema.exceptions.best_match(errors) or errors[0]
        line, column = _position(node, list(error.absolute_path))
        where = ".".join(str(part) for part in error.absolute_path) or "(top level)"
        raise PolicyError(
            f"{origin}:{line}:{column}: {where}: {_message(error)}. "
            "Fix the policy file; nothing runs under an invalid policy."
        )
    return data


def content_hash(data: Mapping[str, Any]) -> str:
    """The policy's content hash, recorded with every audit event."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _message(error: jsonschema.ValidationError) -> str:
    if error.validator == "additionalProperties":
        return error.message.replace("Additional properties are not allowed", "unknown key")
    if error.validator == "enum":
        return f"{error.instance!r} is not one of {error.validator_value}"
    if error.validator in ("oneOf", "anyOf") and isinstance(error.instance, (str, dict)):
        return f"{json.dumps(error.instance)} is not a valid value here"
    return error.message


def _position(node: yaml.Node | None, path: list[Any]) -> tuple[int, int]:
    """Walk the YAML node tree along a JSON path; return the 1-based line and column."""
    current = node
    for part in path:
        if isinstance(current, yaml.MappingNode):
            for key, value in current.value:
                if key.value == str(part):
                    current = value
                    break
            else:
                break
        elif isinstance(current, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(current.value):
                break
            current = current.value[part]
        else:
            break
    if current is None:
        return 1, 1
    return current.start_mark.line + 1, current.start_mark.column + 1
