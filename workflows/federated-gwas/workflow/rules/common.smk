# Helpers of the federated GWAS rules: config validation, the site registry, input functions.
# Rule files hold rules only; every Python helper lives here.
import json
import os
import re
import shlex
from pathlib import Path
from urllib.parse import unquote, urlparse

import yaml
from snakemake.utils import validate

from snakemake_executor_plugin_fedgen.errors import ConfigError
from snakemake_executor_plugin_fedgen.sites import load_registry
from snakemake_fedgen.assemblies import chrom_length
from snakemake_fedgen.cli import put_on_path
from snakemake_fedgen.impute import chunk_grid, sort_chromosomes


validate(config, schema="../schemas/config.schema.yaml")
if config["qc"]["prune"]["step"] > config["qc"]["prune"]["window"]:
    raise WorkflowError(
        f"config qc.prune: step {config['qc']['prune']['step']} exceeds window "
        f"{config['qc']['prune']['window']}; plink2 --indep-pairwise refuses that. Set step to at "
        "most the window."
    )

# The coordinator's own steps (dataset references, meta-analysis, report) call `fedgen`: find
# the one installed with this Snakemake, without the user activating its environment.
put_on_path()


# Pinned toolset images. Under the fedgen node's bwrap/host runtimes an image is the id of an
# approved toolset (the site's allow-list), under docker/podman it is pulled as is.
PLINK2_IMAGE = "docker://quay.io/biocontainers/plink2:2.00a5.10--h4ac6f70_0"
BCFTOOLS_IMAGE = "docker://quay.io/biocontainers/bcftools:1.16--hfe4b78e_1"
BEAGLE_IMAGE = "docker://quay.io/biocontainers/beagle:5.4_22Jul22.46e--hdfd78af_0"
# plink2 + bcftools + the fedgen CLI: steps that mix PLINK 2 with a `fedgen` helper.
FEDGEN_IMAGE = "docker://ghcr.io/snakemake-fedgen/fedgen-tools:0.2.0"

REGISTRY = load_registry(config["sites"])
# In the registry's order, everywhere: the meta-analysis takes its studies in this order and the
# first one is the reference for aligning palindromic SNPs by frequency, so the consortium
# decides it (list the largest site first), not the alphabet.
_INCLUDED = config.get("include_sites") or list(REGISTRY.sites)
_UNKNOWN = [s for s in _INCLUDED if s not in REGISTRY.sites]
if _UNKNOWN:
    raise WorkflowError(
        f"config include_sites: {', '.join(map(str, _UNKNOWN))} not in {config['sites']} "
        f"(sites: {', '.join(REGISTRY.sites)})"
    )
SITES = [s for s in REGISTRY.sites if s in _INCLUDED]
TRAITS = sorted(config["traits"])
# Chromosomes analysed, as PLINK codes in genome order: imputed and tested one by one.
CHROMOSOMES = sort_chromosomes([str(c) for c in config["chromosomes"]])
# Dataset roles used by the rules -> dataset names in the registry (genetic_map may be null:
# Beagle then assumes 1 cM per Mb).
DATASETS = {role: name for role, name in config["datasets"].items() if name}
DATASET_FILES = {
    "genotypes": "genotypes.vcf.gz",
    "phenotypes": "phenotypes.tsv",
    "reference_panel": "reference_panel.vcf.gz",
    "genetic_map": "genetic_map.map",
}

for _site in SITES:
    _known = REGISTRY.site(_site).datasets
    for _role, _name in DATASETS.items():
        if _name not in _known:
            raise WorkflowError(
                f"{config['sites']}: site {_site} has no dataset {_name!r} (config "
                f"datasets.{_role}); known datasets: {', '.join(sorted(_known)) or 'none'}. "
                "Add it to the registry or map the role to another dataset name."
            )

# Sites holding their phenotypes as a folder of GA4GH Phenopacket v2 files (registry dataset
# `format: phenopackets`, URL ending in /): a site rule turns the folder into the phenotype
# table at the site (rules/datasets.smk), mapped by config `phenopackets`.
PHENOPACKET_SITES = [
    s
    for s in SITES
    if REGISTRY.site(s).datasets[DATASETS["phenotypes"]].format == "phenopackets"
]
PHENOPACKET_COLUMNS = {"sex", "age"}  # covariates a phenopacket's subject provides
# Sites holding their genotypes as a folder (registry URL ending in /): VCF/BCF files, one per
# chromosome, or one PLINK 1 or PLINK 2 fileset. `fedgen qc import` reads them at the site.
GENOTYPE_FOLDER_SITES = [
    s
    for s in SITES
    if REGISTRY.site(s).datasets[DATASETS["genotypes"]].url.endswith("/")
]
# Dataset roles that may be a folder -> the folder's name under sites/{site}/datasets/.
FOLDER_DATASETS = {"phenotypes": "phenopackets", "genotypes": "genotypes"}


def _check_assemblies():
    """A site whose genotypes and reference panel declare different builds: one error now."""
    for site in SITES:
        datasets = REGISTRY.site(site).datasets
        genotypes = datasets[DATASETS["genotypes"]].assembly or config["assembly"]
        panel = datasets[DATASETS["reference_panel"]].assembly
        if panel and panel != genotypes:
            raise WorkflowError(
                f"{config['sites']}: site {site} declares its genotypes as {genotypes} "
                f"{'(config assembly)' if not datasets[DATASETS['genotypes']].assembly else ''}"
                f"but its reference panel as {panel}; imputation and alignment need one build. "
                "Lift the genotypes over to the panel's build (or use a panel of theirs) and "
                "declare `assembly:` of both datasets in the registry."
            )


_check_assemblies()


def _check_phenopackets():
    """One clear error for a phenopacket site the config cannot map to the analysis columns."""
    mapping = config["phenopackets"]["traits"]
    for site in PHENOPACKET_SITES:
        url = REGISTRY.site(site).datasets[DATASETS["phenotypes"]].url
        if not url.endswith("/"):
            raise WorkflowError(
                f"{config['sites']}: site {site} dataset {DATASETS['phenotypes']} has format "
                f"phenopackets but its url {url} does not end in '/'; a phenopacket dataset is "
                "a folder: end the url with '/'."
            )
    kinds = {"quantitative": "assay", "binary": "terms"}
    for trait in TRAITS:
        kind = kinds[config["traits"][trait]["type"]]
        if kind not in mapping.get(trait, {}):
            raise WorkflowError(
                f"config phenopackets.traits.{trait}: site(s) {', '.join(PHENOPACKET_SITES)} "
                f"hold phenopackets, so {config['traits'][trait]['type']} trait {trait} needs "
                f"`{kind}:` (the term id that gives it, see the config's comment)."
            )
    for kind in kinds.values():
        traits = [t for t in TRAITS if kind in mapping.get(t, {})]
        if len(traits) > 1:
            raise WorkflowError(
                f"config phenopackets.traits: {', '.join(traits)} all use `{kind}:`; "
                "`fedgen phenopackets to-table` writes one measurement and one case/control "
                "column. Analyse one trait of each kind per run."
            )
    extra = sorted(set(config["covariates"]) - PHENOPACKET_COLUMNS)
    if extra:
        raise WorkflowError(
            f"config covariates {', '.join(extra)}: the phenotype table made from the "
            f"phenopackets of site(s) {', '.join(PHENOPACKET_SITES)} has only "
            f"{', '.join(sorted(PHENOPACKET_COLUMNS))}; drop the others from `covariates`."
        )


if PHENOPACKET_SITES:
    _check_phenopackets()


wildcard_constraints:
    # Site names come from the registry so a typo cannot create a site nobody runs.
    site="|".join(re.escape(s) for s in SITES),
    trait="|".join(re.escape(t) for t in TRAITS),
    dataset="|".join(re.escape(f) for f in DATASET_FILES.values()),
    folder="|".join(FOLDER_DATASETS.values()),
    model=r"linear|logistic\.hybrid",
    chrom="|".join(re.escape(c) for c in CHROMOSOMES),
    chunk=r"[1-9][0-9]*",


def get_site(wildcards):
    """The site a job runs at: its {site} wildcard (resource `site` for the executor)."""
    return wildcards.site


def dataset_path(site, role):
    """Coordinator path of the dataset reference (or local link) for a dataset role."""
    return f"sites/{site}/datasets/{DATASET_FILES[role]}"


def get_dataset_name(wildcards):
    """Registry dataset name behind a dataset file name."""
    role = {v: k for k, v in DATASET_FILES.items()}[wildcards.dataset]
    return DATASETS[role]


def get_folder_dataset_name(wildcards):
    """Registry dataset name behind a folder dataset (phenopackets, genotypes)."""
    role = {v: k for k, v in FOLDER_DATASETS.items()}[wildcards.folder]
    return DATASETS[role]


def get_dataset_local_path(wildcards):
    """Local file or folder of a file:// dataset URL (dataset_access: local, a site's own run)."""
    name = (
        get_folder_dataset_name(wildcards)
        if "folder" in wildcards.keys()
        else get_dataset_name(wildcards)
    )
    dataset = REGISTRY.site(wildcards.site).datasets[name]
    url = urlparse(dataset.url)
    if url.scheme != "file":
        raise WorkflowError(
            f"{config['sites']}: site {wildcards.site} dataset {dataset.name} is at {dataset.url}; "
            "dataset_access: local needs file:// URLs. Use dataset_access: reference with the "
            "fedgen executor instead."
        )
    return (
        unquote(url.path).rstrip("/")
        if "folder" in wildcards.keys()
        else unquote(url.path)
    )


def get_genotypes(wildcards):
    """The site's genotypes: one VCF/BCF file, or a folder (per-chromosome VCFs, PLINK)."""
    if wildcards.site in GENOTYPE_FOLDER_SITES:
        return f"sites/{wildcards.site}/datasets/{FOLDER_DATASETS['genotypes']}"
    return dataset_path(wildcards.site, "genotypes")


def get_phenotype_source(wildcards):
    """The site's phenotype table as held: its dataset, or the one made from its phenopackets."""
    if wildcards.site in PHENOPACKET_SITES:
        return f"sites/{wildcards.site}/phenotypes/phenopackets.tsv"
    return dataset_path(wildcards.site, "phenotypes")


def get_phenotypes(wildcards):
    """The phenotype table matched to the genotype samples (rule qc_phenotypes)."""
    return f"sites/{wildcards.site}/qc/phenotypes.tsv"


def get_phenopackets_folder(wildcards):
    """Coordinator path of a phenopacket site's folder reference (a directory output)."""
    return f"sites/{wildcards.site}/datasets/{FOLDER_DATASETS['phenotypes']}"


def get_phenopackets_trait(wildcards, kind, what):
    """`fedgen phenopackets to-table` argument for the analysed trait of ``kind`` (qt/bt):
    its column name, or its assay (qt) or comma-separated terms (bt); `none` without one.
    """
    for trait, spec in config["phenopackets"]["traits"].items():
        if trait not in TRAITS or ("assay" in spec) != (kind == "qt"):
            continue
        if what == "name":
            return trait
        return spec["assay"] if kind == "qt" else ",".join(spec["terms"])
    return "none"


def get_phenopackets_columns():
    """phenopackets.columns without the analysed traits (their columns come from `traits`)."""
    return {
        name: spec
        for name, spec in config["phenopackets"].get("columns", {}).items()
        if name not in TRAITS
    }


def get_reference_panel(wildcards):
    return dataset_path(wildcards.site, "reference_panel")


# Imputation chunks (snakemake_fedgen/impute.py): a grid over each chromosome from the length of
# the site's assembly and the config, known before any task runs and independent of site data.
CHUNK_BP = round(config["impute"]["chunk_mb"] * 1_000_000)
OVERLAP_BP = round(config["impute"]["overlap_mb"] * 1_000_000)
# Without chunks a chromosome is one window, whatever its length (tabix's largest position).
WHOLE_CHROMOSOME = 2**29 - 1


def site_chunks(site, chrom):
    """The imputation chunks of a chromosome at a site (its genotypes' assembly)."""
    if not CHUNK_BP:
        return chunk_grid(chrom, WHOLE_CHROMOSOME, size_bp=0, overlap_bp=0)
    assembly = (
        REGISTRY.site(site).datasets[DATASETS["genotypes"]].assembly
        or config["assembly"]
    )
    try:
        length = chrom_length(assembly, chrom)
    except ConfigError as exc:
        raise WorkflowError(f"site {site}: {exc}") from None
    return chunk_grid(chrom, length, size_bp=CHUNK_BP, overlap_bp=OVERLAP_BP)


if config["impute"]["overlap_mb"] > config["impute"]["chunk_mb"] > 0:
    raise WorkflowError(
        f"config impute: overlap_mb {config['impute']['overlap_mb']} exceeds chunk_mb "
        f"{config['impute']['chunk_mb']}; a chunk's flank would reach past its neighbour. Use "
        "an overlap of at most the chunk size (the imputation servers use 20 Mb chunks with "
        "a few Mb of flank)."
    )
# An unknown assembly or chromosome fails here, before any task, not mid-run.
for _site in SITES:
    for _chrom in CHROMOSOMES:
        site_chunks(_site, _chrom)


def get_chunk_field(name):
    """Input function: one coordinate (start, end, window_start, window_end) of the chunk
    {chunk} of {chrom} at {site}."""

    def field(wildcards):
        chunks = site_chunks(wildcards.site, wildcards.chrom)
        index = int(wildcards.chunk)
        if not 1 <= index <= len(chunks):
            raise WorkflowError(
                f"chromosome {wildcards.chrom} has {len(chunks)} chunks at site "
                f"{wildcards.site}, not {index}"
            )
        return getattr(chunks[index - 1], name)

    return field


def get_chunk_files(suffix):
    """Input function: every chunk's ``chunk<N>.<suffix>`` of {chrom} at {site}, in order."""

    def files(wildcards):
        return [
            f"sites/{wildcards.site}/impute/{wildcards.chrom}/chunk{c.index}.{suffix}"
            for c in site_chunks(wildcards.site, wildcards.chrom)
        ]

    return files


def get_genetic_map(wildcards):
    """The site's genetic map, or nothing (config datasets.genetic_map: null)."""
    return (
        dataset_path(wildcards.site, "genetic_map") if "genetic_map" in DATASETS else []
    )


def get_beagle_map(wildcards, input):
    """Beagle's map= argument: the genetic map, or none (Beagle assumes 1 cM per Mb)."""
    return f"map={input.genetic_map}" if input.get("genetic_map") else ""


def output_prefix(wildcards, output):
    """PLINK 2 --out prefix of a rule: its first output without the extension."""
    first = str(output[0])
    for ext in (".pgen", ".eigenvec", ".het", ".afreq", ".vcf.gz", ".log", ".tsv"):
        if first.endswith(ext):
            return first[: -len(ext)]
    return os.path.splitext(first)[0]


def get_pca_mode(wildcards):
    """`approx` (randomized PCA) for a large reference panel, exact PCA otherwise."""
    return "approx" if config["qc"]["pca_approx"] else ""


# Principal components computed on the reference panel and projected onto every site: as many
# as the GWAS (pcs) and the heterozygosity check (qc.het_pcs) need, at least one.
PANEL_PCS = max(config["pcs"], config["qc"]["het_pcs"], 1)


def get_trait_type(wildcards):
    return config["traits"][wildcards.trait]["type"]


def get_glm_modifiers(wildcards):
    """--glm modifiers: linear for quantitative traits, logistic with Firth fallback otherwise."""
    cols = "cols=+a1freq,+machr2"
    if get_trait_type(wildcards) == "binary":
        return f"firth-fallback hide-covar {cols},+firth"
    return f"hide-covar {cols}"


def get_glm_model(wildcards):
    """plink2 --glm report suffix of the trait's model."""
    return "logistic.hybrid" if get_trait_type(wildcards) == "binary" else "linear"


def get_glm_output(wildcards):
    """The plink2 --glm report of the trait (named by plink2 after phenotype and model)."""
    model, trait = get_glm_model(wildcards), wildcards.trait
    return f"sites/{wildcards.site}/gwas/{trait}.{model}.{trait}.glm.{model}"


def get_glm_log(wildcards):
    """The plink2 log next to the report (the exporter reads the PLINK version from it)."""
    return (
        f"sites/{wildcards.site}/gwas/{wildcards.trait}.{get_glm_model(wildcards)}.log"
    )


def get_assembly(wildcards):
    """Genome assembly of the site's genotypes, as declared in the registry."""
    dataset = REGISTRY.site(wildcards.site).datasets[DATASETS["genotypes"]]
    return dataset.assembly or config["assembly"]


def get_trait_description(wildcards):
    return config["traits"][wildcards.trait]["description"]


def get_covariate_columns(wildcards):
    """Comma-separated covariate columns of the phenotype table, `none` without any."""
    return ",".join(config["covariates"]) or "none"


def get_sumstats(wildcards):
    """Every site's GWAS-SSF file of a trait (egress outputs, downloaded to the coordinator)."""
    return expand(
        "results/sumstats/{site}/{trait}.tsv.gz", site=SITES, trait=wildcards.trait
    )


def get_sumstats_meta(wildcards):
    """The GWAS-SSF sidecars (-meta.yaml) next to each site's summary statistics."""
    return [f"{path}-meta.yaml" for path in get_sumstats(wildcards)]


def get_meta_options(wildcards):
    """fedgen meta options from the config: random effects, genomic control."""
    options = []
    if config["meta"]["model"] == "random":
        options.append("--random")
    if config["meta"]["genomic_control"]:
        options += ["--gc", "--gc-result"]
    return " ".join(options)


def get_qc_counts():
    return expand("results/sumstats/{site}/qc_counts.tsv", site=SITES)


def get_imputation_counts():
    return expand("results/sumstats/{site}/imputation_counts.tsv", site=SITES)


def get_exact_traits():
    """Traits fitted by exact pooled regression (method: exact-linear): the quantitative ones,
    and the binary ones with exact.binary logistic (Newton rounds, rules/exact.smk)."""
    if config["method"] != "exact-linear":
        return []
    return [*QUANTITATIVE_TRAITS, *LOGIT_TRAITS]


def get_exact_aggregates(wildcards):
    """Every site's exact-mode upload of a trait: masked with exact.secure, plain otherwise."""
    name = "aggregates.masked.tsv" if config["exact"]["secure"] else "aggregates.tsv.gz"
    return [f"results/sumstats/{site}/{wildcards.trait}.{name}" for site in SITES]


def get_pc_columns(wildcards):
    """PC1,...,PC<pcs>: the panel's PCs projected onto the site (a slope per site in exact
    mode); `none` with pcs: 0."""
    if config["pcs"] == 0:
        return "none"
    return ",".join(f"PC{i}" for i in range(1, config["pcs"] + 1))


def get_final_output():
    """Final targets: meta-analysis (or exact fit), plots and the QC summary of every trait."""
    exact = get_exact_traits()
    meta = [t for t in TRAITS if t not in exact]
    return [
        *expand("results/meta/{trait}.tsv.gz", trait=meta),
        *expand("results/meta/{trait}.manhattan.png", trait=meta),
        *expand("results/meta/{trait}.qq.png", trait=meta),
        *expand("results/meta/{trait}.top_hits.tsv", trait=meta),
        *expand("results/exact/{trait}.{ext}", trait=exact, ext=EXACT_OUTPUTS),
        "results/qc/qc_counts.tsv",
        *get_risk_outputs(),
        PROVENANCE_CRATE,
    ]


QUANTITATIVE_TRAITS = [
    t for t in TRAITS if config["traits"][t]["type"] == "quantitative"
]
# Binary traits fitted by exact logistic rounds (method exact-linear, exact.binary logistic).
LOGIT_TRAITS = (
    [t for t in TRAITS if config["traits"][t]["type"] == "binary"]
    if config["method"] == "exact-linear" and config["exact"]["binary"] == "logistic"
    else []
)
# The exact-mode rules match only these (a regex that never matches if there are none).
EXACT_TRAIT_PATTERN = "|".join(re.escape(t) for t in QUANTITATIVE_TRAITS) or "(?!)"
LOGIT_TRAIT_PATTERN = "|".join(re.escape(t) for t in LOGIT_TRAITS) or "(?!)"
EXACT_ANY_TRAIT_PATTERN = "|".join(re.escape(t) for t in get_exact_traits()) or "(?!)"
# What the exact-mode solve writes per trait (results/exact/{trait}.*).
EXACT_OUTPUTS = ("tsv.gz", "unsolved.tsv", "manhattan.png", "qq.png", "top_hits.tsv")
# A site's plain aggregates: its egress output, or site-held when only masked uploads may leave.
EXACT_PLAIN = (
    "sites/{site}/exact/{trait}.aggregates.tsv.gz"
    if config["exact"]["secure"]
    else "results/sumstats/{site}/{trait}.aggregates.tsv.gz"
)


def get_registry_order(wildcards):
    """All registry sites in registry order: the site-indicator columns of exact mode."""
    return ",".join(REGISTRY.sites)


def get_exact_round(wildcards):
    """Secure-aggregation round id of a trait: exact.round plus the trait."""
    return f"{config['exact']['round']}.{wildcards.trait}"


def get_logit_round(wildcards):
    """Round id of a binary trait's logistic fit; each Newton round appends .it<N>."""
    return f"{config['exact']['round'] or 'plain'}.{wildcards.trait}.logit"


def get_logit_mask(wildcards, what):
    """fedgen_mask_* backend parameter of a logistic round (None when not secure)."""
    if not config["exact"]["secure"]:
        return None
    if what == "participants":
        return ",".join(SITES)
    return f"{get_logit_round(wildcards)}.it{wildcards.it}"


def get_logit_covariates(wildcards):
    """Shared covariates of the logistic fit: the trait covariates and the projected PCs (one
    slope across sites: every site projects onto the same panel PCs)."""
    pcs = [f"PC{i}" for i in range(1, config["pcs"] + 1)]
    return ",".join([*config["covariates"], *pcs]) or "none"


def get_logit_previous_state(wildcards):
    return f"results/exact/{wildcards.trait}/logit/state.{int(wildcards.it) - 1}.json"


def get_logit_round_terms(wildcards):
    return [
        f"results/sumstats/{s}/{wildcards.trait}.logit.{wildcards.it}.sums.json"
        for s in SITES
    ]


def get_logit_final_state(wildcards):
    """The first state of a binary trait's chain of Newton rounds that says stopped (each a
    checkpoint's output: rounds are added one at a time while variants still move)."""
    it = 0
    while True:
        if it == 0:
            ck = checkpoints.exact_logit_init.get(trait=wildcards.trait)
        else:
            ck = checkpoints.exact_logit_step.get(trait=wildcards.trait, it=str(it))
        if json.loads(Path(ck.output.state).read_text()).get("stopped"):
            return ck.output.state
        it += 1


def get_exact_key_dataset(wildcards):
    """Registry dataset of the site's X25519 private key (secure aggregation)."""
    return config["exact"]["key_dataset"]


# Secure aggregation needs a round id and every analysed site's key pair: say so before any
# task is sent, not halfway through the run.
if config["exact"]["secure"]:
    if not config["exact"]["round"]:
        raise WorkflowError(
            "config exact.secure is true but exact.round is not set; set exact.round to a "
            "fresh id for this analysis (e.g. exact: {secure: true, round: gwas-2026-11-25.1} "
            "in the config file), never one used before with other data"
        )
    if len(SITES) < 3:
        raise WorkflowError(
            f"config exact.secure: only {len(SITES)} site(s) ({', '.join(SITES)}); secure "
            "aggregation needs at least three (with two, each site could subtract its own "
            "numbers from the sum and read the other's). Set exact.secure: false"
        )
    if LOGIT_TRAITS and config["exact"]["mask_at"] == "task":
        raise WorkflowError(
            "config exact.binary: logistic with exact.secure runs its rounds with node masking "
            "only (exact.mask_at: node): each round would otherwise hand the task the site's "
            "key. Set exact.mask_at: node (each node's secure_aggregation_key), or exact.binary: "
            "meta"
        )
    for _site in SITES if config["exact"]["mask_at"] == "task" else []:
        _entry = REGISTRY.site(_site)
        if config["exact"]["key_dataset"] not in _entry.datasets:
            raise WorkflowError(
                f"{config['sites']}: site {_site} has no dataset "
                f"{config['exact']['key_dataset']!r} (config exact.key_dataset), needed with "
                "exact.secure; the site creates its key with `fedgen exact keygen --out KEY` "
                "and registers KEY as that dataset"
            )
        if not _entry.public_key_x25519:
            raise WorkflowError(
                f"{config['sites']}: site {_site} has no public_key_x25519, needed with "
                "exact.secure; add the public key its `fedgen exact keygen` printed"
            )


# The run's RO-Crate (rules/provenance.smk). Outside results/: it describes this run (task ids,
# times, endpoints), while results/ holds what the analysis computed.
PROVENANCE_CRATE = "provenance/ro-crate"


def get_crate_outputs():
    """Coordinator outputs recorded (with SHA-256) in the crate: every other final target."""
    return [path for path in get_final_output() if path != PROVENANCE_CRATE]


def get_crate_options(wildcards, input):
    """`fedgen provenance crate` options: sites, purpose, outputs, and how site jobs ran."""
    options = [arg for site in SITES for arg in ("--site", site)]
    if config["purpose"] is not None:
        options += ["--purpose", json.dumps(config["purpose"], sort_keys=True)]
    options += [arg for path in input.outputs for arg in ("--output", path)]
    if config["dataset_access"] == "local":
        # Site jobs ran in this Snakemake process on local files: there are no TES tasks to list.
        options.append("--no-site-tasks")
    return " ".join(shlex.quote(o) for o in options)


# Federated risk prediction (rules/risk.smk). A "fit" is a training set of sites: "all", or
# "without-X" (leave-one-site-out, evaluated at X); a "model" is a feature set.
RISK = config["risk"]
RISK_MODELS = {
    "clinical": list(RISK["clinical"]),
    "clinical_pgs": ["pgs", *RISK["clinical"]],
}
RISK_LOSO = [f"without-{s}" for s in SITES]
RISK_LOSO_PATTERN = "|".join(re.escape(f) for f in RISK_LOSO) or "(?!)"
RISK_FITS = ["all", *(RISK_LOSO if "loso" in RISK["evaluate"] else [])]


wildcard_constraints:
    fit="|".join(re.escape(f) for f in ["all", *RISK_LOSO]),
    rmodel="|".join(RISK_MODELS),
    evalset="insample|loso",


def get_risk_assembly(wildcards):
    """The sites' genotype build (declared in the registry, else config assembly): the build a
    PGS Catalog scoring file must be on."""
    builds = {
        REGISTRY.site(s).datasets[DATASETS["genotypes"]].assembly or config["assembly"]
        for s in SITES
    }
    if len(builds) != 1:
        raise WorkflowError(
            f"{config['sites']}: the sites' genotypes are on {', '.join(sorted(builds))}; one "
            "score needs one build: lift the genotypes over to one assembly"
        )
    return builds.pop()


if RISK["enabled"]:
    if RISK["pgs"]["source"] == "catalog" and not RISK["pgs"]["scoring_file"]:
        raise WorkflowError(
            "config risk.pgs.source is catalog but risk.pgs.scoring_file is not set: give the "
            "path of a PGS Catalog scoring file at the coordinator (the harmonised "
            f"PGS..._hmPOS_{config['assembly']}.txt.gz, docs/risk-prediction.md)"
        )
    if RISK["pgs"]["source"] == "meta":
        if RISK["gwas_trait"] not in TRAITS:
            raise WorkflowError(
                f"config risk.gwas_trait {RISK['gwas_trait']!r} is not in traits "
                f"({', '.join(TRAITS)}); add it there so its meta-analysis is run"
            )
        if not RISK["pgs"]["ld_panel"]:
            raise WorkflowError(
                "config risk.pgs.ld_panel is not set: clumping the meta-analysis needs a public "
                "reference panel (VCF) readable at the coordinator"
            )
    if "loso" in RISK["evaluate"] and len(SITES) < 2:
        raise WorkflowError("config risk.evaluate loso needs at least two sites")
    if not RISK["secure"] or len(SITES) < 3:
        # The evaluation's risk histograms hold cells of one or two people at any real site:
        # the airlocks admit them only masked, summed over three or more sites.
        raise WorkflowError(
            f"config risk: the evaluation's round sums leave a site only masked by its node "
            f"among three or more sites (risk.secure: true; the analysis has {len(SITES)}: "
            f"{', '.join(SITES)}); set risk.secure: true and give each node its "
            "secure_aggregation_key and peers (docs/risk-prediction.md)"
        )


def get_risk_outputs():
    """The risk target: the models fitted on all sites and every evaluation's metrics."""
    if not RISK["enabled"]:
        return []
    return [
        *expand("results/risk/all/{rmodel}/model.json", rmodel=RISK_MODELS),
        *expand("results/risk/eval/{evalset}.metrics.tsv", evalset=RISK["evaluate"]),
        *expand(
            "results/risk/eval/{evalset}.calibration.png", evalset=RISK["evaluate"]
        ),
        *expand("results/risk/{rmodel}.model_card.html", rmodel=RISK_MODELS),
    ]


def risk_fit_sites(fit):
    """The sites a fit trains on (registry order)."""
    return [s for s in SITES if fit != f"without-{s}"]


def get_risk_fit_sites_csv(wildcards):
    return ",".join(risk_fit_sites(wildcards.fit))


def get_risk_run(wildcards):
    return RISK["run"]


def get_risk_loso_sumstats(wildcards):
    """Summary statistics of the score's GWAS at every site of a leave-one-out fit."""
    return [
        f"results/sumstats/{s}/{RISK['gwas_trait']}.tsv.gz"
        for s in risk_fit_sites(wildcards.fit)
    ]


def get_risk_meta(wildcards):
    """The meta-analysis the score weights of a fit come from."""
    if RISK["pgs"]["source"] != "meta":
        return []
    if wildcards.fit == "all":
        return f"results/meta/{RISK['gwas_trait']}.tsv.gz"
    return f"results/risk/meta/{wildcards.fit}.tsv.gz"


def get_risk_site_inputs(wildcards):
    """A site's model inputs: its phenotype table and, for models with the score, its scores."""
    inputs = {"pheno": get_phenotypes(wildcards)}
    if "pgs" in RISK_MODELS[wildcards.rmodel]:
        inputs["scores"] = risk_scores(wildcards.site, wildcards.fit)
    return inputs


def get_risk_features(wildcards):
    return ",".join(RISK_MODELS[wildcards.rmodel])


def get_risk_join(wildcards):
    """The score table joined to the phenotype table (`none` for the clinical model)."""
    if "pgs" not in RISK_MODELS[wildcards.rmodel]:
        return "none"
    return risk_scores(wildcards.site, wildcards.fit)


def risk_scores(site, fit):
    """A site's score table for a fit's weights. With source catalog every fit has the same
    weights, so each site scores once (fit "all") and every fit reads that table."""
    if RISK["pgs"]["source"] == "catalog":
        fit = "all"
    return f"sites/{site}/risk/{fit}/scores.tsv"


def _risk_masked(participants):
    return RISK["secure"] and len(participants) >= 3


def get_risk_fit_run(wildcards):
    """Run id of one fit of one model: every round id of the fit starts with it."""
    return f"{RISK['run']}.{wildcards.fit}.{wildcards.rmodel}"


def get_risk_mask(wildcards, what, stage):
    """fedgen_mask_* backend parameter of a fit's round (None: the round is not masked).

    The round id is the one `fedgen risk moments`/`terms` writes into the sums: the node
    masks only sums of the round the task asked for. A terms round's id names the state it
    was computed at (snakemake_fedgen.risk.model.terms_round), which exists by the time the
    round's jobs are created: it is the previous checkpoint's output.
    """
    participants = risk_fit_sites(wildcards.fit)
    if not _risk_masked(participants):
        return None
    if what == "participants":
        return ",".join(participants)
    if stage == "moments":
        return f"{get_risk_fit_run(wildcards)}.moments"
    from snakemake_fedgen.risk.model import read_state, terms_round

    return terms_round(read_state(Path(get_risk_previous_state(wildcards))))


def get_risk_masked_by(wildcards):
    """`fedgen risk terms --masked-by`: the site's node masks the rounds of a masked fit."""
    return "node" if _risk_masked(risk_fit_sites(wildcards.fit)) else "none"


def get_risk_eval_mask(wildcards, what, stage):
    """fedgen_mask_* backend parameter of an evaluation round (every site takes part)."""
    if not _risk_masked(SITES):
        return None
    if what == "participants":
        return ",".join(SITES)
    return f"{RISK['run']}.{wildcards.evalset}.{stage}"


def get_risk_moments(wildcards):
    return [
        f"results/sumstats/{s}/risk/{wildcards.fit}.{wildcards.rmodel}.moments.sums.json"
        for s in risk_fit_sites(wildcards.fit)
    ]


def get_risk_previous_state(wildcards):
    return f"results/risk/{wildcards.fit}/{wildcards.rmodel}/state.{int(wildcards.it) - 1}.json"


def get_risk_round_terms(wildcards):
    return [
        f"results/sumstats/{s}/risk/{wildcards.fit}.{wildcards.rmodel}.terms.{wildcards.it}"
        ".sums.json"
        for s in risk_fit_sites(wildcards.fit)
    ]


def RISK_STATE_DONE(state):
    """A fit's state ends the chain: converged, or stopped at risk.max_rounds (finish fails)."""
    return bool(state.get("stopped"))


def get_risk_final_state(wildcards):
    """The first state of a fit's chain of rounds that has converged (or stopped).

    Each state is a checkpoint's output: asking for it makes Snakemake run that round and
    re-evaluate the DAG, so rounds are added one at a time while the centre's step says the
    fit has not converged, and never beyond.
    """
    it = 0
    while True:
        if it == 0:
            ck = checkpoints.risk_init.get(fit=wildcards.fit, rmodel=wildcards.rmodel)
        else:
            ck = checkpoints.risk_step.get(
                fit=wildcards.fit, rmodel=wildcards.rmodel, it=str(it)
            )
        state = json.loads(Path(ck.output.state).read_text())
        if RISK_STATE_DONE(state):
            return ck.output.state
        it += 1


def get_risk_weights(wildcards):
    """The score weights of a fit: the meta-analysis of its sites clumped, or with source
    catalog the one PGS Catalog score for every fit (it was not trained on these sites).
    """
    if RISK["pgs"]["source"] == "catalog":
        return "results/risk/weights/catalog.weights.tsv"
    return f"results/risk/weights/{wildcards.fit}.weights.tsv"


def get_risk_model_weights(wildcards):
    """The score weights a model with the score was fitted with (recorded in the model)."""
    if "pgs" not in RISK_MODELS[wildcards.rmodel]:
        return []
    return get_risk_weights(wildcards)


def get_risk_model_provenance(wildcards, input):
    """--provenance options of a model: its training fit, sites and score weights' SHA-256."""
    import hashlib

    items = [f"fit={wildcards.fit}", f"sites={get_risk_fit_sites_csv(wildcards)}"]
    if input.weights:
        digest = hashlib.sha256(Path(input.weights).read_bytes()).hexdigest()
        items += [f"weights={input.weights}", f"weights_sha256={digest}"]
    return " ".join(f"--provenance {shlex.quote(item)}" for item in items)


def get_risk_card_options(wildcards, input):
    """--evaluation NAME=JSON --plot NAME=PNG for each evaluation on the model card."""
    options = []
    for name, result, plot in zip(
        RISK["evaluate"], input.evaluations, input.plots, strict=True
    ):
        options += ["--evaluation", f"{name}={result}", "--plot", f"{name}={plot}"]
    return " ".join(shlex.quote(o) for o in options)


def get_risk_eval_inputs(wildcards):
    """What a site scores its people with in an evaluation: the fit trained on all sites
    (insample) or without it (loso), both models, and the scores of that fit's weights.
    """
    fit = "all" if wildcards.evalset == "insample" else f"without-{wildcards.site}"
    return {
        "pheno": get_phenotypes(wildcards),
        "scores": risk_scores(wildcards.site, fit),
        **{m: f"results/risk/{fit}/{m}/model.json" for m in RISK_MODELS},
    }
