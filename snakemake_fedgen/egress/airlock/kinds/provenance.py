"""The ``provenance`` kind: a ``.prov.json`` record that follows the shipped JSON schema."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from snakemake_fedgen.egress.airlock.kind import Kind
from snakemake_fedgen.egress.airlock.policy import AirlockPolicy
from snakemake_fedgen.egress.airlock.sniff import Sniff

__all__ = ["KIND", "PROVENANCE_SCHEMA"]

#: The versioned schema a provenance record must follow (shipped with the package).
PROVENANCE_SCHEMA = Path(__file__).resolve().parents[3] / "schemas" / "provenance.schema.json"
_PROVENANCE_MAX_BYTES = 1024 * 1024


def detect(s: Sniff) -> bool:
    return not s.compression and s.name.lower().endswith(".prov.json")


def validate(stream: BinaryIO, sniff: Sniff, policy: AirlockPolicy) -> tuple[bool, str]:
    import json

    import jsonschema

    if not policy.task_provenance:
        return False, (
            "provenance records written inside a task do not leave this site (their command "
            "strings are text the task chooses); the node's own provenance record comes with "
            "every task. A site that wants them sets airlock.task_provenance: true"
        )
    data = stream.read(_PROVENANCE_MAX_BYTES + 1)
    if len(data) > _PROVENANCE_MAX_BYTES:
        return False, f"provenance record larger than {_PROVENANCE_MAX_BYTES} bytes"
    try:
        schema = json.loads(PROVENANCE_SCHEMA.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        # Without the schema nothing says what the record may hold: refuse, do not guess.
        return False, f"no usable provenance schema at {PROVENANCE_SCHEMA} ({exc})"
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        return False, f"not valid UTF-8 JSON ({exc})"
    validator_cls = jsonschema.validators.validator_for(schema)
    error = jsonschema.exceptions.best_match(validator_cls(schema).iter_errors(doc))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        return False, f"does not follow {PROVENANCE_SCHEMA.name} at {where}: {error.message}"
    return True, f"provenance record follows {PROVENANCE_SCHEMA.name}"


KIND = Kind("provenance", detect, validate)
