# Export to GWAS-SSF with the site's disclosure settings (at the site). The outputs are under
# results/sumstats/{site}/, the only paths the site's egress allow-list lets leave.


rule sumstats_export:
    input:
        glm=get_glm_output,
        plink_log=get_glm_log,
        pheno=get_phenotypes,
        psam="sites/{site}/qc/qc.psam",
        # The panel every step aligned and imputed to: its ##contig lines give the refget digest
        # the meta-analysis compares across sites (a site's own files may be PLINK files without
        # contigs, or say chr1 where others say 1), and sites that declare the same panel keep
        # their palindromic SNPs in the meta-analysis.
        panel=get_reference_panel,
        rsids="sites/{site}/impute/imputed.rsids.tsv",
    output:
        sumstats="results/sumstats/{site}/{trait}.tsv.gz",
        meta="results/sumstats/{site}/{trait}.tsv.gz-meta.yaml",
    params:
        assembly=get_assembly,
        trait_type=get_trait_type,
        description=get_trait_description,
        min_n=config["egress"]["min_n"],
        min_mac=config["egress"]["min_mac"],
    log:
        "logs/{site}/sumstats_export.{trait}.log",
    resources:
        site=get_site,
        mem_mb=1000,
        runtime=20,
    conda:
        "../envs/fedgen.yaml"
    container:
        FEDGEN_IMAGE
    shell:
        "fedgen sumstats export --glm {input.glm} --out {output.sumstats}"
        " --site {wildcards.site} --assembly {params.assembly}"
        " --trait-type {params.trait_type} --trait-description {params.description:q}"
        " --min-n {params.min_n} --min-mac {params.min_mac}"

        " --pheno {input.pheno} --pheno-name {wildcards.trait} --keep {input.psam}"
        " --rsids {input.rsids} --refget-vcf {input.panel} --aligned-to-panel {input.panel}"
        " > {log} 2>&1"
        # Case/control counts over the analysed samples (binary traits; ignored otherwise).
