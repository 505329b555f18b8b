"""A new consortium's first files and first checks: ``fedgen sites init`` and the workflow
readiness columns of ``fedgen sites check``.

``init_sites`` writes a commented ``sites.yaml`` (the analyst's registry) and, per site, a
``node.yaml`` (the steward's node config) that match the workflow: the images its rules name
are the node's allow-list, the node runs approved code only, its airlock is the workflow's
disclosure settings, and the dataset names are the ones the workflow config maps its roles to.
``workflow_readiness`` compares a node's public service-info with what the workflow needs.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from snakemake_executor_plugin_fedgen.errors import ConfigError
from snakemake_executor_plugin_fedgen.fileio import write_text_atomic

#: The repository's federated GWAS workflow (a source checkout).
WORKFLOW = Path(__file__).resolve().parents[1] / "workflows" / "federated-gwas"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def workflow_images(workflow: Path = WORKFLOW) -> list[str]:
    """The images the workflow's site rules name (``*_IMAGE`` in ``rules/common.smk``), as the
    ids a node's ``allowed_images`` must admit (without ``docker://``)."""
    common = Path(workflow) / "workflow" / "rules" / "common.smk"
    try:
        text = common.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"{common}: cannot read ({exc.strerror}); give --workflow the folder holding "
            "workflow/Snakefile"
        ) from None
    return [m.removeprefix("docker://") for m in re.findall(r'_IMAGE = "([^"]+)"', text)]


def workflow_config(workflow: Path = WORKFLOW, config: Path | None = None) -> dict[str, Any]:
    """The analysis config: ``config`` if given, else the workflow's ``config/config.yaml``."""
    path = Path(config) if config else Path(workflow) / "config" / "config.yaml"
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the workflow config ({exc})") from None


def release_digest(workflow: Path = WORKFLOW) -> str:
    """The digest ``fedgen node approve`` records for this workflow release."""
    from snakemake_fedgen.node.approvals import read_release

    return read_release(Path(workflow)).digest


def _env_name(site: str) -> str:
    return "FEDGEN_TOKEN_" + re.sub(r"[^A-Za-z0-9]", "_", site).upper()


def _registry_text(
    sites: Sequence[str],
    *,
    images: Sequence[str],
    datasets: dict[str, str],
    assembly: str,
    data_root: Path | None,
    base_port: int | None,
) -> str:
    fedgen_image = next((i for i in images if "fedgen" in i), images[-1] if images else "")
    out = [
        "# Site registry of the consortium (written by `fedgen sites init`). The analyst keeps it",
        "# next to the analysis; the workflow config names it (sites: sites.yaml) and so does the",
        "# executor (--fedgen-sites sites.yaml). Fill in what each site's data steward tells you",
        "# (lines marked STEWARD), then run `fedgen sites validate sites.yaml` and",
        "# `fedgen sites check sites.yaml`. Keys: docs/further.md; own data: docs/own-data.md.",
        "# Never put a token here: only the name of the environment variable that holds it.",
        "version: 1",
        "default_site: null",
        "# Sites in the order the meta-analysis takes them: the first one is the reference for",
        "# aligning palindromic SNPs, so list the largest site first.",
        "sites:",
    ]
    for i, site in enumerate(sites):
        root = (data_root / site) if data_root else Path("/srv/fedgen") / site
        ref = (data_root / "reference") if data_root else Path("/srv/fedgen/reference")
        if base_port is not None:
            tes = f"http://127.0.0.1:{base_port + i}/ga4gh/tes/v1"
            egress_read = f"http://127.0.0.1:{base_port + i}/fedgen/v1/egress"
        else:
            tes = f"https://tes.{site.lower()}.example.org/ga4gh/tes/v1"
            egress_read = f"https://tes.{site.lower()}.example.org/fedgen/v1/egress"
        out += [
            f"  {site}:",
            f"    description: {site}",
            "    # STEWARD: the node's TES URL (fedgen node: http(s)://HOST:PORT/ga4gh/tes/v1).",
            f"    tes_url: {tes}",
            "    # The variable holding the token the steward issued you (an entry of the node's",
            "    # token_file); or token_command: [CMD, ARG] printing a fresh one.",
            f"    token_env: {_env_name(site)}",
            "    # STEWARD: the node's write roots: private work storage, and the egress folder the",
            "    # airlock publishes from (read back through egress_read_url).",
            f"    work_url: {(root / 'work').as_uri()}",
            f"    egress_url: {(root / 'egress').as_uri()}",
            f"    egress_read_url: {egress_read}",
            "    egress: allow-list",
            '    egress_allow: ["results/sumstats/**"]',
            f"    default_image: {fedgen_image}",
            "    max_parallel_tasks: 2",
            "    # The datasets the workflow needs, by the names its config maps roles to. URLs are",
            "    # as the site sees them (inside the node's read_roots); the data never moves.",
            "    # duo: the data-use terms (docs/governance.md); assembly: GRCh37 or GRCh38, the same",
            "    # for genotypes and panel (the workflow refuses a mismatch before any task).",
            "    datasets:",
            f"      {datasets['genotypes']}:",
            "        # STEWARD: a bgzipped VCF or a BCF; or a folder (URL ending in /) of VCF/BCF",
            "        # files, one per chromosome, or of one PLINK 1 (.bed/.bim/.fam) or PLINK 2",
            "        # (.pgen/.pvar/.psam) fileset. chr1 or 1: either.",
            f"        url: {(root / 'data' / 'genotypes.vcf.gz').as_uri()}",
            "        duo: [DUO:0000042]",
            f"        assembly: {assembly}",
            f"      {datasets['phenotypes']}:",
            "        # STEWARD: tab-separated, header 'FID IID trait... covariate...' or 'IID ...';",
            "        # IID is the genotype sample ID (VCF sample name, or the IID of the .fam).",
            f"        url: {(root / 'data' / 'phenotypes.tsv').as_uri()}",
            "        duo: [DUO:0000042]",
            f"      {datasets['reference_panel']}:",
            "        # A phased reference panel VCF (imputation, alignment, ancestry PCs), the same",
            "        # file at every site.",
            f"        url: {(ref / 'panel.vcf.gz').as_uri()}",
            f"        assembly: {assembly}",
        ]
        if datasets.get("genetic_map"):
            out += [
                f"      {datasets['genetic_map']}:",
                "        # PLINK-format genetic map in the same build and chromosome naming",
                "        # (docs/own-data.md: where to get one). No map: config",
                "        # datasets.genetic_map: null (Beagle assumes 1 cM per Mb).",
                f"        url: {(ref / 'genetic_map.map').as_uri()}",
            ]
    return "\n".join(out) + "\n"


def _node_text(
    site: str,
    index: int,
    *,
    images: Sequence[str],
    egress: dict[str, Any],
    data_root: Path | None,
    base_port: int | None,
) -> str:
    root = (data_root / site) if data_root else Path("/srv/fedgen") / site
    ref = (data_root / "reference") if data_root else Path("/srv/fedgen/reference")
    lines = [
        f"# fedgen node config of site {site} (written by `fedgen sites init`; the data steward's",
        "# file). Start the node with `fedgen node --config node.yaml --state-dir STATE`;",
        "# every key: `fedgen node --help` and docs/site-admin.md.",
        f"node_id: {site}",
        "host: 127.0.0.1   # behind the site's TLS reverse proxy; loopback only without one",
        f"port: {base_port + index if base_port is not None else 8101}",
        "# Where the site's data is (read only to tasks) and where tasks write.",
        f"read_roots: [{root / 'data'}, {ref}]",
        f"write_roots: [{root / 'work'}, {root / 'egress'}]",
        f"egress_root: {root / 'egress'}",
        "# The images the workflow's rules name (workflows/federated-gwas/workflow/rules/",
        "# common.smk); the node refuses every other image.",
        "allowed_images:",
        *(f"  - {image}" for image in images),
        "# Run only workflow releases the steward approved (`fedgen node approve WORKFLOW`).",
        "approved_code: required",
        "# Callers and their tokens (YAML 'caller: token', mode 0600); give each caller its own.",
        f"token_file: {root / 'node' / 'tokens.yaml'}",
        "# What may leave: at least as strict as the workflow config's egress settings.",
        "airlock:",
        *(f"  {k}: {v}" for k, v in egress.items()),
        "# Sample IDs that must never appear in a task log that reaches the coordinator: the",
        "# genotype VCF (or a .fam/.psam of a PLINK fileset) and the phenotype table.",
        f"redact_ids_from: [{root / 'data' / 'genotypes.vcf.gz'}, {root / 'data' / 'phenotypes.tsv'}]",
    ]
    return "\n".join(lines) + "\n"


def init_sites(
    out: Path,
    sites: Sequence[str],
    *,
    workflow: Path = WORKFLOW,
    config: Path | None = None,
    assembly: str | None = None,
    data_root: Path | None = None,
    base_port: int | None = None,
) -> list[Path]:
    """Write ``out/sites.yaml`` and ``out/nodes/<site>/node.yaml`` for a new consortium.

    Dataset names, the assembly and the node airlock come from the analysis ``config`` (default:
    the workflow's own).
    ``data_root`` puts each site's paths under ``data_root/<site>`` (a trial on one machine);
    ``base_port`` gives the sites loopback TES URLs on consecutive ports. Existing files are
    not overwritten. Returns the files written.
    """
    if not sites:
        raise ConfigError("fedgen sites init: name at least one site (--site NAME)")
    bad = [s for s in sites if not _NAME.match(s)]
    if bad or len(set(sites)) != len(sites):
        raise ConfigError(
            f"fedgen sites init: site names {', '.join(bad) or 'repeat'}; use letters, digits, "
            "'.', '_' or '-', each name once"
        )
    settings = workflow_config(workflow, config)
    images = workflow_images(workflow)
    datasets = {
        "genotypes": "genotypes",
        "phenotypes": "phenotypes",
        "reference_panel": "reference_panel",
        "genetic_map": "genetic_map",
        **(settings.get("datasets") or {}),
    }
    egress = dict(settings.get("egress") or {})
    out = Path(out)
    targets = [out / "sites.yaml", *(out / "nodes" / s / "node.yaml" for s in sites)]
    existing = [str(t) for t in targets if t.exists()]
    if existing:
        raise ConfigError(
            f"fedgen sites init: {', '.join(existing)} already exist; nothing was written "
            "(move them away or choose another --out)"
        )
    write_text_atomic(
        targets[0],
        _registry_text(
            sites,
            images=images,
            datasets=datasets,
            assembly=assembly or settings.get("assembly", "GRCh38"),
            data_root=data_root.absolute() if data_root else None,
            base_port=base_port,
        ),
    )
    for i, site in enumerate(sites):
        targets[i + 1].parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(
            targets[i + 1],
            _node_text(
                site,
                i,
                images=images,
                egress=egress,
                data_root=data_root.absolute() if data_root else None,
                base_port=base_port,
            ),
        )
    return targets


def workflow_readiness(
    info: dict[str, Any], *, images: Sequence[str], digest: str | None
) -> tuple[str, bool]:
    """What a node's service-info says about running this workflow: (cell text, ok).

    Checks that every workflow image matches the node's allow-list and, where the node runs
    approved code only, that this workflow release is approved there. A TES server that is not a
    fedgen node publishes neither; that is said, not failed.
    """
    node = info.get("fedgen")
    if not isinstance(node, dict):
        return "not a fedgen node: images and approvals not checked", True
    problems = []
    allow = node.get("allowed_images") or []
    if node.get("image_allow_list"):
        refused = [i for i in images if not any(fnmatch.fnmatchcase(i, p) for p in allow)]
        if refused:
            problems.append(
                f"refuses image(s) {', '.join(refused)}: add them to node.yaml allowed_images"
            )
    approved = node.get("approved_releases") or []
    if node.get("approved_code") == "required" and digest is not None and digest not in approved:
        problems.append(
            f"this workflow release ({digest[:12]}) is not approved: the steward runs "
            "`fedgen node approve WORKFLOW_DIR`"
        )
    if problems:
        return "; ".join(problems), False
    return f"ok: {len(images)} images allowed" + (
        ", release approved" if node.get("approved_code") == "required" else ""
    ), True
