# Central steps (coordinator): meta-analysis over the sites' downloaded summary statistics.


rule meta_analysis:
    input:
        sumstats=get_sumstats,
        meta=get_sumstats_meta,
    output:
        meta="results/meta/{trait}.tsv.gz",
        sidecar="results/meta/{trait}.tsv.gz-meta.yaml",
        exclusions="results/meta/{trait}.exclusions.tsv.gz",
        studies="results/meta/{trait}.studies.tsv",
    params:
        prefix=subpath(output.meta, strip_suffix=".tsv.gz"),
        model=config["meta"]["model"],
        gc=get_meta_gc_flag,
    log:
        "logs/meta/{trait}.log",
    benchmark:
        "benchmarks/meta/{trait}.tsv"
    localrule: True
    conda:
        "../envs/fedgen.yaml"
    container:
        FEDGEN_IMAGE
    shell:
        "fedgen meta --out {params.prefix} --model {params.model} {params.gc}"
        " {input.sumstats} > {log} 2>&1"


rule meta_top_hits:
    input:
        meta="results/meta/{trait}.tsv.gz",
    output:
        top=report(
            "results/meta/{trait}.top_hits.tsv",
            caption="../workflows/federated-gwas/report/top_hits.rst",
            category="Association",
            subcategory="{trait}",
            labels={"trait": "{trait}", "figure": "top hits"},
        ),
    params:
        n=config["report"]["top_hits"],
        threshold=config["report"]["significance"],
    log:
        "logs/meta/{trait}.top_hits.log",
    localrule: True
    conda:
        "../envs/plots.yaml"
    script:
        "scripts/top_hits.py"
