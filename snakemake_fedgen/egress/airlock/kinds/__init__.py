"""The registry of file kinds the airlock publishes, one module per kind.

Each module defines ``KIND``, a :class:`~snakemake_fedgen.egress.airlock.kind.Kind` (name,
``detect(sniff)`` and a streaming ``validate(stream, sniff, policy)``). A file is checked by the
first kind whose detector claims it, so the order matters. Adding a kind is one new module here
plus one line below.
"""

from __future__ import annotations

from snakemake_fedgen.egress.airlock.kind import Kind
from snakemake_fedgen.egress.airlock.kinds import (
    aggregates,
    counts,
    meta,
    provenance,
    sums,
    sumstats,
)

__all__ = ["KINDS"]

#: Kind name -> kind, tried in this order.
KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        aggregates.KIND,  # exact-mode aggregates; before sumstats, which claims every .tsv name
        counts.KIND,  # QC counts table; also before sumstats
        sumstats.KIND,  # GWAS-SSF table
        meta.KIND,  # GWAS-SSF -meta.yaml sidecar
        provenance.KIND,  # .prov.json record
        sums.KIND,  # risk-model round sums (.sums.json)
    )
}
