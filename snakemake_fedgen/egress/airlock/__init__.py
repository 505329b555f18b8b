"""The egress airlock: decide whether a file may leave its site.

A site publishes a file written under its egress root only if :func:`inspect` accepts it. The
airlock is a whitelist: a file must match one registered *kind* (:data:`KINDS`) and pass that
kind's disclosure checks. The kinds are

* ``aggregates`` -- exact-mode aggregates tables, plain or masked (:mod:`.kinds.aggregates`);
* ``counts`` -- a QC counts table with small cells suppressed (:mod:`.kinds.counts`);
* ``sumstats`` -- a GWAS-SSF summary-statistics table (:mod:`.kinds.sumstats`);
* ``sumstats-meta`` -- the GWAS-SSF ``-meta.yaml`` metadata sidecar (:mod:`.kinds.meta`);
* ``provenance`` -- a ``.prov.json`` record that follows the shipped schema
  (:mod:`.kinds.provenance`).

Everything else is refused, and per-sample formats (VCF/BCF, PLINK binaries and their
sample/variant tables, tables with a sample-ID column) are recognised by their *content*, not
only by their name (:mod:`.sniff`), so renaming a VCF to ``x.tsv`` does not get it out.

The decision carries the file's size and SHA-256 so the node can publish exactly the bytes that
were checked and the audit log can name them.

Modules: :mod:`.policy` (the site's :class:`AirlockPolicy` and the :class:`AirlockDecision`),
:mod:`.sniff`, :mod:`.kind` (the :class:`Kind` record and the line reader text kinds share),
:mod:`.kinds` (one module per kind and the registry) and :mod:`.gate` (:func:`inspect`).
"""

from __future__ import annotations

from snakemake_fedgen.egress.airlock.gate import inspect
from snakemake_fedgen.egress.airlock.kind import Kind
from snakemake_fedgen.egress.airlock.kinds import KINDS
from snakemake_fedgen.egress.airlock.kinds.counts import COUNTS_HEADER, COUNTS_TOKEN_RE
from snakemake_fedgen.egress.airlock.kinds.provenance import PROVENANCE_SCHEMA
from snakemake_fedgen.egress.airlock.kinds.sumstats import minor_allele_count
from snakemake_fedgen.egress.airlock.policy import AirlockDecision, AirlockPolicy
from snakemake_fedgen.egress.airlock.sniff import Sniff

__all__ = [
    "COUNTS_HEADER",
    "COUNTS_TOKEN_RE",
    "KINDS",
    "PROVENANCE_SCHEMA",
    "AirlockDecision",
    "AirlockPolicy",
    "Kind",
    "Sniff",
    "inspect",
    "minor_allele_count",
]
