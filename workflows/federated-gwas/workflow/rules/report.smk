# Central tables for `snakemake --report` (coordinator); the plots come from fedgen meta.


rule qc_summary:
    input:
        counts=get_qc_counts(),
        imputation=get_imputation_counts(),
    output:
        table=report(
            "results/qc/qc_counts.tsv",
            caption="../report/qc_counts.rst",
            category="Quality control",
            labels={"table": "QC counts per site"},
        ),
    params:
        sites=SITES,
    log:
        "logs/qc/qc_summary.log",
    localrule: True
    conda:
        "../envs/plots.yaml"
    script:
        "../scripts/qc_table.py"
