# Association with plink2 --glm on covariates and principal components (at the site).


rule gwas_covariates:
    input:
        pheno=get_phenotypes,
        pcs="sites/{site}/qc/pcs.tsv",
        psam="sites/{site}/qc/qc.psam",
    output:
        # All PCs (exact mode's per-site slopes) and, for --glm, without the PCs that are
        # collinear at this site (plink2 refuses them: VIF).
        covar="sites/{site}/gwas/covariates.tsv",
        glm_covar="sites/{site}/gwas/covariates.glm.tsv",
    params:
        columns=get_covariate_columns,
        pcs=config["pcs"],
    log:
        "logs/{site}/gwas_covariates.log",
    resources:
        site=get_site,
        mem_mb=500,
        runtime=10,
    conda:
        "../envs/fedgen.yaml"
    container:
        FEDGEN_IMAGE
    shell:
        # PCs: the panel's axes projected onto the site (rule qc_project_pcs).
        "fedgen qc covariates --pheno {input.pheno} --eigenvec {input.pcs}"
        " --columns {params.columns} --pcs {params.pcs} --keep {input.psam}"
        " --output {output.covar} --collinear-output {output.glm_covar} 2> {log}"


rule gwas_glm:
    input:
        pgen="sites/{site}/impute/{chrom}/imputed.pgen",
        pvar="sites/{site}/impute/{chrom}/imputed.pvar",
        psam="sites/{site}/impute/{chrom}/imputed.psam",
        pheno=get_phenotypes,
        covar="sites/{site}/gwas/covariates.glm.tsv",
    output:
        # plink2 names the report after phenotype and model (.glm.linear, .glm.logistic.hybrid);
        # the export rule asks for the one that matches the trait type.
        glm="sites/{site}/gwas/{chrom}/{trait}.{model}.{trait}.glm.{model}",
        plink_log="sites/{site}/gwas/{chrom}/{trait}.{model}.log",
    params:
        prefix=subpath(output.plink_log, strip_suffix=".log"),
        modifiers=get_glm_modifiers,
    log:
        "logs/{site}/gwas_glm.{trait}.{model}.{chrom}.log",
    benchmark:
        "benchmarks/{site}/gwas_glm.{trait}.{model}.{chrom}.tsv"
    threads: 2
    resources:
        site=get_site,
        mem_mb=2000,
        runtime=60,
    conda:
        "../envs/plink2.yaml"
    container:
        PLINK2_IMAGE
    shell:
        "plink2 --pgen {input.pgen} --pvar {input.pvar} --psam {input.psam}"
        " --pheno {input.pheno} --pheno-name {wildcards.trait} --covar {input.covar}"
        " --covar-variance-standardize --glm {params.modifiers} --threads {threads}"
        " --memory {resources.mem_mb} --out {params.prefix} > {log} 2>&1"


# The per-chromosome reports of a trait as one, in genome order (the header once; reports with
# different columns are refused), before the export.
rule gwas_gather:
    input:
        glm=expand(
            "sites/{{site}}/gwas/{chrom}/{{trait}}.{{model}}.{{trait}}.glm.{{model}}",
            chrom=CHROMOSOMES,
        ),
        plink_log=expand(
            "sites/{{site}}/gwas/{chrom}/{{trait}}.{{model}}.log", chrom=CHROMOSOMES
        ),
    output:
        glm="sites/{site}/gwas/{trait}.{model}.{trait}.glm.{model}",
        plink_log="sites/{site}/gwas/{trait}.{model}.log",
    log:
        "logs/{site}/gwas_gather.{trait}.{model}.log",
    resources:
        site=get_site,
        mem_mb=500,
        runtime=10,
    conda:
        "../envs/bcftools.yaml"
    container:
        BCFTOOLS_IMAGE
    shell:
        "(awk 'FNR == 1 {{ if (NR == 1) h = $0; else if ($0 != h) {{ print FILENAME \": header"
        ' differs from the first" | "cat 1>&2"; exit 1 }} else next }} 1\''
        " {input.glm} > {output.glm}.partial && mv {output.glm}.partial {output.glm}"
        " && cat {input.plink_log} > {output.plink_log}) 2> {log}"
