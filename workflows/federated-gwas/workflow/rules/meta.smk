# Central steps (coordinator): meta-analysis over the sites' downloaded summary statistics.


rule meta_analysis:
    input:
        sumstats=get_sumstats,
        sidecars=get_sumstats_meta,
    output:
        meta="results/meta/{trait}.tsv.gz",
        sidecar="results/meta/{trait}.tsv.gz-meta.yaml",
        exclusions="results/meta/{trait}.exclusions.tsv.gz",
        studies=report(
            "results/meta/{trait}.studies.tsv",
            caption="../report/studies.rst",
            category="Association",
            subcategory="{trait}",
            labels={"trait": "{trait}", "figure": "studies"},
        ),
        manhattan=report(
            "results/meta/{trait}.manhattan.png",
            caption="../report/manhattan.rst",
            category="Association",
            subcategory="{trait}",
            labels={"trait": "{trait}", "figure": "Manhattan"},
        ),
        qq=report(
            "results/meta/{trait}.qq.png",
            caption="../report/qq.rst",
            category="Association",
            subcategory="{trait}",
            labels={"trait": "{trait}", "figure": "QQ"},
        ),
    params:
        prefix=subpath(output.meta, strip_suffix=".tsv.gz"),
        options=get_meta_options,
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
        # The sidecars sit next to the tables; fedgen meta reads them for site, assembly and
        # case/control counts (effective N).
        "fedgen meta --out {params.prefix} {params.options} {input.sumstats} > {log} 2>&1"


rule meta_top_hits:
    input:
        meta="results/meta/{trait}.tsv.gz",
    output:
        top=report(
            "results/meta/{trait}.top_hits.tsv",
            caption="../report/top_hits.rst",
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
        "../scripts/top_hits.py"
