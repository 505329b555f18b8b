# Central plots and tables for `snakemake --report` (coordinator).


rule plot_gwas:
    input:
        meta="results/meta/{trait}.tsv.gz",
    output:
        manhattan=report(
            "results/plots/{trait}.manhattan.png",
            caption="../workflows/federated-gwas/report/manhattan.rst",
            category="Association",
            subcategory="{trait}",
            labels={"trait": "{trait}", "figure": "Manhattan"},
        ),
        qq=report(
            "results/plots/{trait}.qq.png",
            caption="../workflows/federated-gwas/report/qq.rst",
            category="Association",
            subcategory="{trait}",
            labels={"trait": "{trait}", "figure": "QQ"},
        ),
    params:
        threshold=config["report"]["significance"],
    log:
        "logs/plots/{trait}.log",
    localrule: True
    conda:
        "../envs/plots.yaml"
    script:
        "scripts/gwas_plots.py"


rule qc_summary:
    input:
        counts=get_qc_counts(),
    output:
        table=report(
            "results/qc/qc_counts.tsv",
            caption="../workflows/federated-gwas/report/qc_counts.rst",
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
        "scripts/qc_table.py"
