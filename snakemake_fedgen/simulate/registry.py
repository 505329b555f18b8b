"""The site registry (``sites.yaml``) and per-site node configs of a simulated federation."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from snakemake_executor_plugin_fedgen.fileio import write_text_atomic

from snakemake_fedgen.simulate.scales import SITE_NAMES

#: Data-use terms per site (DUO, /work/shared/spec/duo.csv): A general research use; B health,
#: medical or biomedical research, non-commercial only; C health/medical/biomedical research
#: with ethics approval required.
SITE_DUO: dict[str, list[str]] = {
    "A": ["DUO:0000042"],
    "B": ["DUO:0000006", "DUO:0000046"],
    "C": ["DUO:0000006", "DUO:0000021"],
}
DEFAULT_IMAGE = "fedgen/tools:0.1"
AIRLOCK = {"min_n": 50, "min_mac": 10, "min_cell": 5}


def site_dir(out: Path, site: str) -> Path:
    """Return the directory holding a site's data, work and egress storage."""
    return out / "sites" / site


def registry(
    out: Path,
    *,
    base_port: int,
    sites: tuple[str, ...] = SITE_NAMES,
    phenopackets_sites: Sequence[str] = (),
) -> dict[str, Any]:
    """Return the ``sites.yaml`` mapping for a federation simulated under ``out`` (absolute).

    The ``phenotypes`` dataset of a site in ``phenopackets_sites`` is its folder of Phenopacket
    v2 files (url ending in ``/``, ``format: phenopackets``) instead of ``phenotypes.tsv``.
    """
    ref = out / "reference"
    entries: dict[str, Any] = {}
    for i, site in enumerate(sites):
        port = base_port + i
        d = site_dir(out, site)
        duo = SITE_DUO[site]
        entries[site] = {
            "tes_url": f"http://127.0.0.1:{port}/ga4gh/tes/v1",
            "token_env": f"FEDGEN_TOKEN_{site}",
            "token_command": None,
            "work_url": (d / "work").as_uri(),
            "egress_url": (d / "egress").as_uri(),
            "egress_read_url": f"http://127.0.0.1:{port}/fedgen/v1/egress",
            "egress": "allow-list",
            "egress_allow": ["results/sumstats/**"],
            "default_image": DEFAULT_IMAGE,
            "max_parallel_tasks": 2,
            "datasets": {
                "genotypes": {
                    "url": (d / "genotypes.vcf.gz").as_uri(),
                    "duo": list(duo),
                    "assembly": "GRCh38",
                },
                "phenotypes": {"url": (d / "phenotypes.tsv").as_uri(), "duo": list(duo)}
                if site not in phenopackets_sites
                else {
                    "url": (d / "phenopackets").as_uri() + "/",
                    "format": "phenopackets",
                    "duo": list(duo),
                },
                "reference_panel": {
                    "url": (ref / "panel.vcf.gz").as_uri(),
                    "assembly": "GRCh38",
                },
                "genetic_map": {"url": (ref / "genetic_map.map").as_uri()},
            },
            "crypt4gh_recipient_key": None,
            "public_key_x25519": None,
        }
    return {"version": 1, "default_site": None, "sites": entries}


#: The workflow's ``phenopackets.columns`` for the simulated clinical columns: how a table's
#: columns map to the terms a Beacon filters on (workflows/federated-gwas/config/config.yaml).
BEACON_COLUMNS: dict[str, Any] = {
    "ldl": {"assay": "LOINC:39469-2", "unit": "UCUM:mmol/L"},
    "sbp": {"assay": "LOINC:8480-6", "unit": "UCUM:mm[Hg]"},
    "smoking": {"terms": ["NCIT:C67147"], "coding": "0/1"},
    "diabetes": {"terms": ["MONDO:0005015"], "coding": "0/1"},
    "cvd": {"terms": ["MONDO:0004995"]},
}


def beacon_config(out: Path, site: str, *, phenopackets: bool = False) -> dict[str, Any]:
    """The ``beacon`` block of ``site``'s node.yaml: one dataset, the site's VCF and phenotypes.

    ``phenopackets``: the site holds its phenotypes as a folder of Phenopackets (``--phenopackets-sites``).
    """
    d = site_dir(out, site)
    phenotypes: dict[str, Any] = (
        {"phenopackets": str(d / "phenopackets")}
        if phenopackets
        else {"phenotypes": str(d / "phenotypes.tsv"), "columns": BEACON_COLUMNS}
    )
    return {
        "id": f"org.example.site-{site}.beacon",
        "name": f"Site {site} Beacon",
        "organization": {"id": f"org.example.site-{site}", "name": f"Site {site}"},
        "datasets": {
            f"{site}-cohort": {
                "name": f"Site {site} cohort",
                "description": "simulated genotypes and clinical data",
                "genotypes": str(d / "genotypes.vcf.gz"),
                "assembly": "GRCh38",
                **phenotypes,
                "visa": f"EGAD-{site}",
            }
        },
    }


def node_config(
    out: Path, site: str, *, beacon: bool = False, phenopackets: bool = False
) -> dict[str, Any]:
    """Return the ``fedgen node`` config of ``site``: its storage roots and disclosure policy
    (with ``beacon``: also a Beacon for its dataset, see :func:`beacon_config`)."""
    d = site_dir(out, site)
    return {
        "node_id": f"site-{site}",
        "read_roots": [str(d), str(out / "reference")],
        "write_roots": [str(d / "work"), str(d / "egress")],
        "egress_root": str(d / "egress"),
        "cpu_cores": 2,
        "airlock": dict(AIRLOCK),
        # The VCF header names every sample of the site: none of them may appear in task logs.
        "redact_ids_from": [str(d / "genotypes.vcf.gz")],
        **({"beacon": beacon_config(out, site, phenopackets=phenopackets)} if beacon else {}),
    }


def write_registry(out: Path, *, base_port: int, phenopackets_sites: Sequence[str] = ()) -> Path:
    """Write ``out/sites.yaml`` and ``out/sites/<S>/node.yaml``; create work/egress dirs."""
    for site in SITE_NAMES:
        d = site_dir(out, site)
        (d / "work").mkdir(parents=True, exist_ok=True)
        (d / "egress").mkdir(parents=True, exist_ok=True)
        # Every simulated node serves a Beacon for its site's dataset (docs/discovery.md).
        config = node_config(out, site, beacon=True, phenopackets=site in phenopackets_sites)
        write_text_atomic(d / "node.yaml", yaml.safe_dump(config, sort_keys=False))
    path = out / "sites.yaml"
    header = (
        "# Site registry of a simulated federation (fedgen simulate).\n"
        "# Tokens are read from the environment variables named by token_env.\n"
    )
    entries = registry(out, base_port=base_port, phenopackets_sites=phenopackets_sites)
    write_text_atomic(path, header + yaml.safe_dump(entries, sort_keys=False))
    return path
