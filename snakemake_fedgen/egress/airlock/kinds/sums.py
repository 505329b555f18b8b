"""The ``sums`` kind: a site's named sums for one round of the risk model (``*.sums.json``).

The format is ``fedgen-sums/1`` (:mod:`snakemake_fedgen.exact.sums` writes and reads it). Every
entry is a sum over the site's people; the airlock checks, from the file's own numbers:

- the labels: ``kind`` is ``risk.<step>`` or ``exact.<step>``, every entry name and the round id
  are short machine tokens (no free text that could carry an identifier), at most
  :data:`MAX_ENTRIES` entries; ``rows`` (exact logistic rounds) are variant keys
  ``chrom:pos:ref:alt`` (public facts of the panel) and entries ``v<row>.<term>`` name one;
- plain values: finite numbers; an entry ``n`` (people summed) with ``n >= min_n``; with an
  entry ``n_cases``, at least ``min_cases`` cases and as many non-cases; every entry named
  as a count of people (``count:...``, a last part ``n``, ``obs``, ``up`` or ``down``, or a
  part ``hist_case``/``hist_ctrl``: a risk bin, a decile, a reclassification; the names
  :mod:`snakemake_fedgen.risk.evaluate` writes) is a whole number that is 0 or at least
  ``min_cell``; a file with no entries at all is a site's suppressed report (meta
  ``suppressed``);
- masked values (ring elements, noise to the airlock): admitted only where the site's policy
  sets ``secure_aggregation: true`` and the round has at least three participants. Where the
  node masks (``secure_aggregation_key``), it checks the plain sums above first, masks them and
  publishes only the masked file; a masked file the task made is refused there.
"""

from __future__ import annotations

import json
import math
import re
from typing import BinaryIO

from snakemake_fedgen.egress.airlock.kind import Kind
from snakemake_fedgen.egress.airlock.kinds.aggregates import (
    HEX_WORD_RE,
    MIN_PARTICIPANTS,
    NAME_RE,
    ROUND_RE,
)
from snakemake_fedgen.egress.airlock.policy import AirlockPolicy
from snakemake_fedgen.egress.airlock.sniff import Sniff

__all__ = ["FORMAT", "KIND", "MAX_ENTRIES", "SUFFIX", "check_sums", "is_count"]

FORMAT = "fedgen-sums/1"
SUFFIX = ".sums.json"
#: Most entries one file may hold (an exact logistic round: ~80 Newton terms for each of a
#: few thousand variants; a risk histogram of a few models x bins is far below).
MAX_ENTRIES = 1_000_000
#: Largest file read (JSON is parsed whole; this bounds memory whatever the file holds).
MAX_BYTES = 128 * 1024 * 1024
KIND_RE = re.compile(r"^(risk|exact)[.\-][a-z0-9_.\-]{1,40}$")
#: Row labels: variant keys chrom:pos:ref:alt.
ROW_RE = re.compile(r"^[A-Za-z0-9_.]{1,40}:[0-9]{1,10}:[ACGTNacgtn*]{1,100}:[ACGTNacgtn*]{1,100}$")
_ROW_ENTRY_RE = re.compile(r"^v([0-9]{1,9})\.")
#: Entry names: machine tokens (a feature, a model, a bin number), never free text.
ENTRY_RE = re.compile(r"^[A-Za-z0-9_.:+\-]{1,80}$")
_TOP_KEYS = frozenset(
    {"format", "site", "round", "kind", "names", "meta", "values", "masked", "participants",
     "frac_bits", "context", "rows"}
)  # fmt: skip


def detect(s: Sniff) -> bool:
    return s.name.lower().endswith(SUFFIX) and not s.compression


_COUNT_LAST = frozenset({"n", "obs", "up", "down"})
_COUNT_PART = frozenset({"hist_case", "hist_ctrl"})


def is_count(name: str) -> bool:
    """Does the entry count people (so a small nonzero value would single someone out)?"""
    parts = re.split(r"[.:]", name)
    return (
        name.startswith("count:")
        or (len(parts) > 1 and parts[-1] in _COUNT_LAST)
        or not _COUNT_PART.isdisjoint(parts)
    )


def _number_problem(name: str, value: object, policy: AirlockPolicy) -> str | None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return f"entry {name!r}: {str(value)[:30]!r} is not a number"
    v = float(value)
    if not math.isfinite(v):
        return f"entry {name!r}: {v} is not finite"
    if is_count(name) and (v != int(v) or (0 < v < policy.min_cell) or v < 0):
        return (
            f"entry {name!r}: a count of people must be 0 or a whole number of at least "
            f"min_cell={policy.min_cell}; got {v:g}"
        )
    return None


def check_sums(doc: object, policy: AirlockPolicy) -> tuple[bool, str]:
    """Check a parsed ``fedgen-sums/1`` document against ``policy``."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        return False, f"not a {FORMAT} document (key 'format' missing or different)"
    extra = sorted(set(doc) - _TOP_KEYS)
    if extra:
        return False, f"unexpected key(s) {', '.join(k[:30] for k in extra[:5])}"
    for key, regex in (("site", NAME_RE), ("round", ROUND_RE), ("kind", KIND_RE)):
        if not isinstance(doc.get(key), str) or not regex.match(doc[key]):
            return False, f"key {key!r}: {str(doc.get(key))[:40]!r} is not a short machine token"
    meta = doc.get("meta", {})
    if not isinstance(meta, dict) or len(meta) > 20:
        return False, "key 'meta': at most 20 short labels"
    for k, v in meta.items():
        if not ENTRY_RE.match(str(k)) or not re.match(r"^[A-Za-z0-9_.:+,\-]{0,80}$", str(v)):
            return False, f"meta {str(k)[:30]!r}: {str(v)[:40]!r} is not a short machine token"
    names = doc.get("names")
    if isinstance(names, list) and not names and "suppressed" in meta:
        if doc.get("values", []) != [] or "masked" in doc:
            return False, "a suppressed report carries no values"
        return True, f"sums {doc['kind']}: suppressed at the site ({meta['suppressed']})"
    if not isinstance(names, list) or not 0 < len(names) <= MAX_ENTRIES:
        return False, f"key 'names': a list of 1 to {MAX_ENTRIES} entry names"
    for i, name in enumerate(names):
        if not isinstance(name, str) or not ENTRY_RE.match(name):
            return False, (
                f"names[{i}]: {str(name)[:40]!r} is not a short machine token "
                "(letters, digits, _ . : + -)"
            )
    if len(set(names)) != len(names):
        return False, "key 'names': an entry name repeats"
    rows = doc.get("rows", [])
    if not isinstance(rows, list) or len(rows) > MAX_ENTRIES:
        return False, f"key 'rows': a list of at most {MAX_ENTRIES} variant keys"
    for i, row in enumerate(rows):
        if not isinstance(row, str) or not ROW_RE.match(row):
            return False, f"rows[{i}]: {str(row)[:40]!r} is not a variant key chrom:pos:ref:alt"
    for name in names if rows else ():
        if (m := _ROW_ENTRY_RE.match(name)) and int(m.group(1)) >= len(rows):
            return False, f"entry {name!r} names row {m.group(1)} of {len(rows)} rows"
    if "masked" in doc:
        return _check_masked(doc, names, policy)
    values = doc.get("values")
    if not isinstance(values, list) or len(values) != len(names):
        return False, f"key 'values': {len(names)} numbers, one per name"
    bad = [p for n, v in zip(names, values, strict=True) if (p := _number_problem(n, v, policy))]
    if bad:
        return False, f"{bad[0]} ({len(bad)} entries violate the policy)"
    by_name = dict(zip(names, values, strict=True))
    n = by_name.get("n")
    if n is None or float(n) != int(n):
        return False, "entry 'n' (the number of people summed, a whole number) is missing"
    if n < policy.min_n:
        return False, f"n={int(n)} is below min_n={policy.min_n}"
    cases = by_name.get("n_cases")
    if cases is not None and (
        float(cases) != int(cases) or min(cases, n - cases) < policy.min_cases
    ):
        return False, (
            f"n_cases={cases:g} of n={int(n)}: cases and non-cases need at least "
            f"min_cases={policy.min_cases} each"
        )
    return True, (
        f"sums {doc['kind']} round {doc['round']}: {len(names)} entries over n={int(n)} pass "
        f"(min_n={policy.min_n}, min_cell={policy.min_cell})"
    )


def _check_masked(doc: dict, names: list, policy: AirlockPolicy) -> tuple[bool, str]:
    if not policy.secure_aggregation:
        return False, (
            "masked sums are noise to the airlock; this site's policy does not admit them "
            "(secure_aggregation: false)"
        )
    participants = doc.get("participants")
    if (
        not isinstance(participants, list)
        or len(participants) < MIN_PARTICIPANTS
        or not all(isinstance(p, str) and NAME_RE.match(p) for p in participants)
        or doc.get("site") not in participants
    ):
        return False, (
            f"masked sums need at least {MIN_PARTICIPANTS} named participants including the "
            "uploading site"
        )
    words = doc["masked"]
    if not isinstance(words, list) or len(words) != len(names):
        return False, f"key 'masked': {len(names)} ring elements, one per name"
    if not all(isinstance(w, str) and HEX_WORD_RE.match(w) for w in words):
        return False, "key 'masked': every value is 32 lower-case hex digits"
    if not isinstance(doc.get("frac_bits"), int) or not isinstance(doc.get("context"), str):
        return False, "masked sums need integer 'frac_bits' and a 'context'"
    if len(doc["context"]) > 300:
        return False, "key 'context': too long"
    return True, (
        f"masked sums {doc['kind']} round {doc['round']}: {len(names)} entries, participants "
        f"{','.join(participants)}"
    )


def validate(stream: BinaryIO, sniff: Sniff, policy: AirlockPolicy) -> tuple[bool, str]:
    raw = stream.read(MAX_BYTES + 1)
    if len(raw) > MAX_BYTES:
        return False, f"larger than {MAX_BYTES} bytes"
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        return False, f"not JSON ({str(exc)[:80]})"
    return check_sums(doc, policy)


KIND = Kind("sums", detect, validate)
