# Exact pooled regression (method: exact-linear; docs/exact-and-secure-aggregation.md).
# At each site `fedgen exact aggregate` turns the imputed dosages, the trait and the covariates
# into sufficient statistics; the centre adds them and fits y ~ covariates + site + dosage on
# all samples pooled, exactly. Binary traits are meta-analysed, or with exact.binary logistic
# fitted by federated Newton-Raphson rounds (the rules at the end of this file).


rule exact_aggregate:
    input:
        # The same imputed dosages and covariates the per-site GWAS uses.
        pgen="sites/{site}/impute/imputed.pgen",
        pvar="sites/{site}/impute/imputed.pvar",
        psam="sites/{site}/impute/imputed.psam",
        pheno=get_phenotypes,
        covar="sites/{site}/gwas/covariates.tsv",
    output:
        aggregates=EXACT_PLAIN,
    params:
        prefix=subpath(input.pgen, strip_suffix=".pgen"),
        sites=get_registry_order,
        covariates=get_covariate_columns,
        pcs=get_pc_columns,
        min_n=config["egress"]["min_n"],
        min_mac=config["egress"]["min_mac"],
    wildcard_constraints:
        trait=EXACT_TRAIT_PATTERN,
    log:
        "logs/{site}/exact_aggregate.{trait}.log",
    resources:
        site=get_site,
        mem_mb=2000,
        runtime=30,
    conda:
        "../envs/fedgen.yaml"
    container:
        FEDGEN_IMAGE
    shell:
        # Raw covariates, not --covar-variance-standardize'd per site as in gwas_glm: each site
        # would rescale differently and the pooled model would change. Shared covariates get
        # one slope; the site's own PCs a slope per site; the site indicator is built from the
        # registry order.
        "fedgen exact aggregate --pfile {params.prefix} --pheno {input.pheno}"
        " --pheno-name {wildcards.trait} --covar {input.covar} --covar-name {params.covariates}"
        " --site-covar-name {params.pcs} --site {wildcards.site} --sites {params.sites}"
        " --min-n {params.min_n} --min-mac {params.min_mac} --out {output.aggregates}"
        " 2> {log}"


if config["exact"]["secure"] or LOGIT_TRAITS:

    rule exact_panel_variants:
        input:
            panel=get_reference_panel,
        output:
            variants="sites/{site}/exact/panel_variants.tsv",
        log:
            "logs/{site}/exact_panel_variants.log",
        resources:
            site=get_site,
            mem_mb=1000,
            runtime=20,
        conda:
            "../envs/bcftools.yaml"
        container:
            BCFTOOLS_IMAGE
        shell:
            # The public variant list every site lays its masked vector out on: the shared
            # reference panel, so all sites produce vectors of the same length and order.
            "(printf '#CHROM\\tPOS\\tID\\tREF\\tALT\\n' > {output.variants}"
            " && bcftools query -f '%CHROM\\t%POS\\t%ID\\t%REF\\t%ALT\\n' {input.panel}"
            " >> {output.variants}) 2> {log}"


if config["exact"]["secure"] and config["exact"]["mask_at"] == "task":

    rule exact_key_reference:
        output:
            ref="sites/{site}/exact/x25519.key",
        params:
            sites=config["sites"],
            name=get_exact_key_dataset,
        log:
            "logs/{site}/exact_key_reference.log",
        localrule: True
        conda:
            "../envs/fedgen.yaml"
        shell:
            "fedgen sites ref --sites {params.sites} --site {wildcards.site}"
            " --dataset {params.name} --output {output.ref} 2> {log}"

    rule exact_mask:
        input:
            aggregates=EXACT_PLAIN,
            key="sites/{site}/exact/x25519.key",
            variants="sites/{site}/exact/panel_variants.tsv",
            registry=config["sites"],
        output:
            masked="results/sumstats/{site}/{trait}.aggregates.masked.tsv",
            ledger="sites/{site}/exact/{trait}.rounds",
        params:
            round=get_exact_round,
            participants=",".join(SITES),
        wildcard_constraints:
            trait=EXACT_TRAIT_PATTERN,
        log:
            "logs/{site}/exact_mask.{trait}.log",
        resources:
            site=get_site,
            mem_mb=2000,
            runtime=30,
        conda:
            "../envs/fedgen.yaml"
        container:
            FEDGEN_IMAGE
        shell:
            "fedgen exact mask --aggregates {input.aggregates} --key {input.key}"
            " --registry {input.registry} --round {params.round}"
            " --participants {params.participants} --variants {input.variants}"
            " --ledger {output.ledger} --out {output.masked} 2> {log}"

elif config["exact"]["secure"]:

    rule exact_mask:
        input:
            aggregates=EXACT_PLAIN,
            variants="sites/{site}/exact/panel_variants.tsv",
        output:
            # Plain aggregates in the task; the node masks them at release with the site key
            # and the peers' pinned keys and publishes only the masked upload.
            masked="results/sumstats/{site}/{trait}.aggregates.masked.tsv",
        wildcard_constraints:
            trait=EXACT_TRAIT_PATTERN,
        log:
            "logs/{site}/exact_mask.{trait}.log",
        resources:
            site=get_site,
            mem_mb=1000,
            runtime=10,
            # TES backend_parameters a fedgen node masks by (exact/site_masking.py).
            fedgen_mask_round=get_exact_round,
            fedgen_mask_participants=",".join(SITES),
            fedgen_mask_variants=lambda wildcards: (
                f"sites/{wildcards.site}/exact/panel_variants.tsv"
            ),
        conda:
            "../envs/fedgen.yaml"
        container:
            FEDGEN_IMAGE
        shell:
            "gzip -dc {input.aggregates} > {output.masked} 2> {log}"


rule exact_solve:
    input:
        uploads=get_exact_aggregates,
    output:
        result="results/exact/{trait}.tsv.gz",
        manhattan=report(
            "results/exact/{trait}.manhattan.png",
            caption="../report/exact_manhattan.rst",
            category="Association",
            subcategory="{trait}",
            labels={"trait": "{trait}", "figure": "Manhattan (exact)"},
        ),
        qq=report(
            "results/exact/{trait}.qq.png",
            caption="../report/exact_qq.rst",
            category="Association",
            subcategory="{trait}",
            labels={"trait": "{trait}", "figure": "QQ (exact)"},
        ),
        # Every variant a site sent: solved, or why not (absent at a site, singular).
        unsolved=report(
            "results/exact/{trait}.unsolved.tsv",
            caption="../report/exact_unsolved.rst",
            category="Association",
            subcategory="{trait}",
            labels={"trait": "{trait}", "figure": "unsolved variants (exact)"},
        ),
    params:
        source="--masked" if config["exact"]["secure"] else "--aggregates",
    wildcard_constraints:
        trait=EXACT_TRAIT_PATTERN,
    log:
        "logs/exact/{trait}.log",
    localrule: True
    conda:
        "../envs/fedgen.yaml"
    container:
        FEDGEN_IMAGE
    shell:
        "fedgen exact solve {params.source} {input.uploads} --out {output.result}"
        " --unsolved {output.unsolved} --manhattan {output.manhattan} --qq {output.qq} 2> {log}"


rule exact_top_hits:
    input:
        meta="results/exact/{trait}.tsv.gz",
    output:
        top=report(
            "results/exact/{trait}.top_hits.tsv",
            caption="../report/exact_top_hits.rst",
            category="Association",
            subcategory="{trait}",
            labels={"trait": "{trait}", "figure": "top hits (exact)"},
        ),
    params:
        n=config["report"]["top_hits"],
        threshold=config["report"]["significance"],
    wildcard_constraints:
        trait=EXACT_ANY_TRAIT_PATTERN,
    log:
        "logs/exact/{trait}.top_hits.log",
    localrule: True
    conda:
        "../envs/plots.yaml"
    script:
        "../scripts/top_hits.py"


# Binary traits (exact.binary: logistic): pooled logistic regression by federated Newton-Raphson.
# The centre's state holds every variant's coefficients (on the public panel's variant list);
# each round every site computes its per-variant score and information at them
# (`fedgen exact logit-terms`, masked by its node with exact.secure) and the centre adds the
# uploads and steps (`fedgen exact logit-step`). Each state is a checkpoint: the next round is
# added only while some variant still moves (get_logit_final_state), so the number of rounds is
# what convergence needs. States larger than the inline-content cap reach the sites through the
# nodes' ingress upload (the executor does it).


# Defined only when used: a checkpoint in the workflow changes how `snakemake --report`
# walks the DAG (it then fails on report outputs of rules excluded by --allowed-rules).
if LOGIT_TRAITS:

    checkpoint exact_logit_init:
        output:
            state="results/exact/{trait}/logit/state.0.json",
        params:
            round=get_logit_round,
            sites=",".join(SITES),
            max_iter=config["exact"]["max_rounds"],
            tol=config["exact"]["tolerance"],
        wildcard_constraints:
            trait=LOGIT_TRAIT_PATTERN,
        log:
            "logs/exact/{trait}.logit_init.log",
        localrule: True
        conda:
            "../envs/fedgen.yaml"
        shell:
            "fedgen exact logit-init --round {params.round} --sites {params.sites}"
            " --max-iter {params.max_iter} --tol {params.tol} --out {output.state} 2> {log}"

    rule exact_logit_terms:
        input:
            pgen="sites/{site}/impute/imputed.pgen",
            pvar="sites/{site}/impute/imputed.pvar",
            psam="sites/{site}/impute/imputed.psam",
            pheno=get_phenotypes,
            covar="sites/{site}/gwas/covariates.tsv",
            variants="sites/{site}/exact/panel_variants.tsv",
            state=get_logit_previous_state,
        output:
            sums="results/sumstats/{site}/{trait}.logit.{it}.sums.json",
        params:
            prefix=subpath(input.pgen, strip_suffix=".pgen"),
            sites=get_registry_order,
            covariates=get_logit_covariates,
            min_n=config["egress"]["min_n"],
            min_mac=config["egress"]["min_mac"],
        wildcard_constraints:
            trait=LOGIT_TRAIT_PATTERN,
            it=r"[1-9][0-9]*",
        log:
            "logs/{site}/exact_logit_terms.{trait}.{it}.log",
        resources:
            site=get_site,
            mem_mb=2000,
            runtime=30,
            # With exact.secure the node masks the plain sums under the round's id.
            fedgen_mask_round=lambda wc: get_logit_mask(wc, "round"),
            fedgen_mask_participants=lambda wc: get_logit_mask(wc, "participants"),
        conda:
            "../envs/fedgen.yaml"
        container:
            FEDGEN_IMAGE
        shell:
            "fedgen exact logit-terms --pfile {params.prefix} --pheno {input.pheno}"
            " --pheno-name {wildcards.trait} --covar {input.covar} --covar-name {params.covariates}"
            " --site {wildcards.site} --sites {params.sites} --variants {input.variants}"
            " --state {input.state} --min-n {params.min_n} --min-mac {params.min_mac}"
            " --out {output.sums} 2> {log}"

    checkpoint exact_logit_step:
        input:
            state=get_logit_previous_state,
            terms=get_logit_round_terms,
        output:
            state="results/exact/{trait}/logit/state.{it}.json",
        wildcard_constraints:
            trait=LOGIT_TRAIT_PATTERN,
            it=r"[1-9][0-9]*",
        log:
            "logs/exact/{trait}.logit_step.{it}.log",
        localrule: True
        conda:
            "../envs/fedgen.yaml"
        shell:
            "fedgen exact logit-step --state {input.state} --terms {input.terms}"
            " --out {output.state} 2> {log}"

    rule exact_logit_finish:
        input:
            state=get_logit_final_state,
        output:
            result="results/exact/{trait}.tsv.gz",
            manhattan=report(
                "results/exact/{trait}.manhattan.png",
                caption="../report/exact_logit_manhattan.rst",
                category="Association",
                subcategory="{trait}",
                labels={"trait": "{trait}", "figure": "Manhattan (exact logistic)"},
            ),
            qq=report(
                "results/exact/{trait}.qq.png",
                caption="../report/exact_logit_qq.rst",
                category="Association",
                subcategory="{trait}",
                labels={"trait": "{trait}", "figure": "QQ (exact logistic)"},
            ),
            unsolved=report(
                "results/exact/{trait}.unsolved.tsv",
                caption="../report/exact_logit_unsolved.rst",
                category="Association",
                subcategory="{trait}",
                labels={
                    "trait": "{trait}",
                    "figure": "unsolved variants (exact logistic)",
                },
            ),
        wildcard_constraints:
            trait=LOGIT_TRAIT_PATTERN,
        log:
            "logs/exact/{trait}.logit_finish.log",
        localrule: True
        conda:
            "../envs/fedgen.yaml"
        shell:
            "fedgen exact logit-finish --state {input.state} --out {output.result}"
            " --unsolved {output.unsolved} --manhattan {output.manhattan} --qq {output.qq}"
            " 2> {log}"
