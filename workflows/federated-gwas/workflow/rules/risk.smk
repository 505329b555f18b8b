# Federated risk prediction (risk.enabled; docs/risk-prediction.md).
#
# 1. Score weights at the centre: clumping and thresholding of the meta-analysis of
#    risk.gwas_trait over every site ("all") and over all sites but one ("without-X", for
#    evaluation at X), LD from the public panel risk.pgs.ld_panel; or (risk.pgs.source
#    catalog) one PGS Catalog scoring file, risk.pgs.scoring_file, for every fit.
# 2. Each site scores its imputed dosages (plink2 --score); scores never leave the site, only
#    the coverage counts do.
# 3. Logistic models of risk.outcome on the clinical features ("clinical") and on the score
#    as well ("clinical_pgs"), fitted by federated Newton-Raphson: standardisation moments,
#    then rounds of (sites: gradient and information at the current state) and (centre: the
#    step). The rounds are a chain of checkpoints: after each step the centre reads the new
#    state, and the DAG grows by one round only while the fit has not converged.
# 4. Evaluation: each site scores its people with the fit of its evaluation set (insample:
#    the fit on all sites; loso: the fit without it) and returns histogram counts (round 1)
#    and calibration/DeLong sums (round 2); the centre computes AUC, delta AUC, calibration,
#    Brier, Nagelkerke R2 and NRI.
# Every site->centre file is a fedgen-sums/1 JSON (the airlock's `sums` kind); with
# risk.secure each site's node masks it (fedgen_mask_* backend parameters) when the round has
# three or more participants.


rule risk_meta_loso:
    input:
        sumstats=get_risk_loso_sumstats,
    output:
        meta="results/risk/meta/{fit}.tsv.gz",
    params:
        prefix=subpath(output.meta, strip_suffix=".tsv.gz"),
        options=get_meta_options,
    wildcard_constraints:
        fit=RISK_LOSO_PATTERN,
    log:
        "logs/risk/meta.{fit}.log",
    localrule: True
    conda:
        "../envs/fedgen.yaml"
    container:
        FEDGEN_IMAGE
    shell:
        "fedgen meta --out {params.prefix} {params.options} {input.sumstats} > {log} 2>&1"


rule risk_weights:
    input:
        meta=get_risk_meta,
        panel=config["risk"]["pgs"]["ld_panel"] or "config-risk-pgs-ld_panel-not-set",
    output:
        weights="results/risk/weights/{fit}.weights.tsv",
    params:
        p=config["risk"]["pgs"]["p_threshold"],
        r2=config["risk"]["pgs"]["clump_r2"],
        kb=config["risk"]["pgs"]["clump_kb"],
        sites=get_risk_fit_sites_csv,
    log:
        "logs/risk/weights.{fit}.log",
    localrule: True
    conda:
        "../envs/fedgen.yaml"
    container:
        FEDGEN_IMAGE
    shell:
        "fedgen pgs clump --meta {input.meta} --panel {input.panel} --sites {params.sites}"
        " --p {params.p} --r2 {params.r2} --kb {params.kb} --out {output.weights} 2> {log}"


rule risk_catalog_weights:
    input:
        scoring_file=config["risk"]["pgs"]["scoring_file"]
        or "config-risk-pgs-scoring_file-not-set",
    output:
        weights="results/risk/weights/catalog.weights.tsv",
    params:
        assembly=get_risk_assembly,
    log:
        "logs/risk/weights.catalog.log",
    localrule: True
    conda:
        "../envs/fedgen.yaml"
    container:
        FEDGEN_IMAGE
    shell:
        "fedgen pgs from-catalog --scoring-file {input.scoring_file}"
        " --assembly {params.assembly} --out {output.weights} 2> {log}"


rule risk_score:
    input:
        pgen="sites/{site}/impute/imputed.pgen",
        pvar="sites/{site}/impute/imputed.pvar",
        psam="sites/{site}/impute/imputed.psam",
        weights=get_risk_weights,
    output:
        # Per-person scores: they stay at the site.
        scores="sites/{site}/risk/{fit}/scores.tsv",
        coverage="results/sumstats/{site}/risk/{fit}.pgs_counts.tsv",
    params:
        prefix=subpath(input.pgen, strip_suffix=".pgen"),
        min_coverage=config["risk"]["pgs"]["min_coverage"],
        min_cell=config["egress"]["min_cell"],
    log:
        "logs/{site}/risk_score.{fit}.log",
    resources:
        site=get_site,
        mem_mb=2000,
        runtime=30,
    conda:
        "../envs/fedgen.yaml"
    container:
        FEDGEN_IMAGE
    shell:
        "fedgen pgs score --pfile {params.prefix} --weights {input.weights}"
        " --min-coverage {params.min_coverage} --min-cell {params.min_cell}"
        " --out {output.scores} --coverage {output.coverage} 2> {log}"


rule risk_moments:
    input:
        unpack(get_risk_site_inputs),
    output:
        sums="results/sumstats/{site}/risk/{fit}.{rmodel}.moments.sums.json",
    params:
        features=get_risk_features,
        outcome=config["risk"]["outcome"],
        run=get_risk_fit_run,
        min_n=config["egress"]["min_n"],
        min_cases=config["risk"]["min_cases"],
        min_cell=config["egress"]["min_cell"],
        join=get_risk_join,
    log:
        "logs/{site}/risk_moments.{fit}.{rmodel}.log",
    resources:
        site=get_site,
        mem_mb=1000,
        runtime=10,
        fedgen_mask_round=lambda wc: get_risk_mask(wc, "round", "moments"),
        fedgen_mask_participants=lambda wc: get_risk_mask(wc, "participants", "moments"),
    conda:
        "../envs/fedgen.yaml"
    container:
        FEDGEN_IMAGE
    shell:
        "fedgen risk moments --table {input.pheno} --join {params.join}"
        " --outcome {params.outcome} --features {params.features} --site {wildcards.site}"
        " --run {params.run} --min-n {params.min_n} --min-cases {params.min_cases}"
        " --min-cell {params.min_cell} --out {output.sums} 2> {log}"


checkpoint risk_init:
    input:
        moments=get_risk_moments,
    output:
        state="results/risk/{fit}/{rmodel}/state.0.json",
    params:
        ridge=config["risk"]["ridge"],
        tol=config["risk"]["tolerance"],
        max_iter=config["risk"]["max_rounds"],
    log:
        "logs/risk/init.{fit}.{rmodel}.log",
    localrule: True
    conda:
        "../envs/fedgen.yaml"
    container:
        FEDGEN_IMAGE
    shell:
        "fedgen risk init --moments {input.moments} --ridge {params.ridge} --tol {params.tol}"
        " --max-iter {params.max_iter} --out {output.state} 2> {log}"


rule risk_terms:
    input:
        unpack(get_risk_site_inputs),
        state=get_risk_previous_state,
    output:
        sums="results/sumstats/{site}/risk/{fit}.{rmodel}.terms.{it}.sums.json",
    params:
        join=get_risk_join,
        min_cell=config["egress"]["min_cell"],
        masked_by=get_risk_masked_by,
    wildcard_constraints:
        it=r"[1-9][0-9]*",
    log:
        "logs/{site}/risk_terms.{fit}.{rmodel}.{it}.log",
    resources:
        site=get_site,
        mem_mb=1000,
        runtime=10,
        fedgen_mask_round=lambda wc: get_risk_mask(wc, "round", "terms"),
        fedgen_mask_participants=lambda wc: get_risk_mask(wc, "participants", "terms"),
    conda:
        "../envs/fedgen.yaml"
    container:
        FEDGEN_IMAGE
    shell:
        "fedgen risk terms --state {input.state} --table {input.pheno} --join {params.join}"
        " --site {wildcards.site} --min-cell {params.min_cell} --masked-by {params.masked_by}"
        " --out {output.sums} 2> {log}"


checkpoint risk_step:
    input:
        state=get_risk_previous_state,
        terms=get_risk_round_terms,
    output:
        state="results/risk/{fit}/{rmodel}/state.{it}.json",
    wildcard_constraints:
        it=r"[1-9][0-9]*",
    log:
        "logs/risk/step.{fit}.{rmodel}.{it}.log",
    localrule: True
    conda:
        "../envs/fedgen.yaml"
    container:
        FEDGEN_IMAGE
    shell:
        "fedgen risk step --state {input.state} --terms {input.terms} --out {output.state}"
        " 2> {log}"


rule risk_finish:
    input:
        state=get_risk_final_state,
        weights=get_risk_model_weights,
    output:
        model="results/risk/{fit}/{rmodel}/model.json",
    params:
        provenance=get_risk_model_provenance,
    log:
        "logs/risk/finish.{fit}.{rmodel}.log",
    localrule: True
    conda:
        "../envs/fedgen.yaml"
    container:
        FEDGEN_IMAGE
    shell:
        "fedgen risk finish --state {input.state} {params.provenance} --out {output.model}"
        " 2> {log}"


rule risk_predict:
    input:
        unpack(get_risk_eval_inputs),
    output:
        # Per-person predictions: they stay at the site.
        predictions="sites/{site}/risk/eval/{evalset}/predictions.tsv",
    params:
        outcome=config["risk"]["outcome"],
    log:
        "logs/{site}/risk_predict.{evalset}.log",
    resources:
        site=get_site,
        mem_mb=1000,
        runtime=10,
    conda:
        "../envs/fedgen.yaml"
    container:
        FEDGEN_IMAGE
    shell:
        "fedgen risk score --model clinical={input.clinical}"
        " --model clinical_pgs={input.clinical_pgs} --table {input.pheno} --join {input.scores}"
        " --outcome {params.outcome} --out {output.predictions} 2> {log}"


rule risk_eval_counts:
    input:
        predictions="sites/{site}/risk/eval/{evalset}/predictions.tsv",
    output:
        counts="results/sumstats/{site}/risk/{evalset}.eval1.sums.json",
        site_metrics="results/sumstats/{site}/risk/{evalset}.site.sums.json",
    params:
        round=lambda wc: f"{get_risk_run(wc)}.{wc.evalset}.eval1",
        outcome=config["risk"]["outcome"],
        min_n=config["egress"]["min_n"],
    log:
        "logs/{site}/risk_eval_counts.{evalset}.log",
    resources:
        site=get_site,
        mem_mb=1000,
        runtime=10,
        fedgen_mask_round=lambda wc: get_risk_eval_mask(wc, "round", "eval1"),
        fedgen_mask_participants=lambda wc: get_risk_eval_mask(
            wc, "participants", "eval1"
        ),
    conda:
        "../envs/fedgen.yaml"
    container:
        FEDGEN_IMAGE
    shell:
        "fedgen risk eval-counts --predictions {input.predictions} --site {wildcards.site}"
        " --outcome {params.outcome} --round {params.round} --min-n {params.min_n}"
        " --out {output.counts} --site-metrics {output.site_metrics} 2> {log}"


rule risk_eval_summary:
    input:
        counts=lambda wc: expand(
            "results/sumstats/{site}/risk/{evalset}.eval1.sums.json",
            site=SITES,
            evalset=wc.evalset,
        ),
    output:
        summary="results/risk/eval/{evalset}.summary.json",
    log:
        "logs/risk/eval_summary.{evalset}.log",
    localrule: True
    conda:
        "../envs/fedgen.yaml"
    container:
        FEDGEN_IMAGE
    shell:
        "fedgen risk eval-summary --counts {input.counts} --out {output.summary} 2> {log}"


rule risk_eval_placements:
    input:
        predictions="sites/{site}/risk/eval/{evalset}/predictions.tsv",
        summary="results/risk/eval/{evalset}.summary.json",
    output:
        sums="results/sumstats/{site}/risk/{evalset}.eval2.sums.json",
    params:
        round=lambda wc: f"{get_risk_run(wc)}.{wc.evalset}.eval2",
        outcome=config["risk"]["outcome"],
    log:
        "logs/{site}/risk_eval_placements.{evalset}.log",
    resources:
        site=get_site,
        mem_mb=1000,
        runtime=10,
        fedgen_mask_round=lambda wc: get_risk_eval_mask(wc, "round", "eval2"),
        fedgen_mask_participants=lambda wc: get_risk_eval_mask(
            wc, "participants", "eval2"
        ),
    conda:
        "../envs/fedgen.yaml"
    container:
        FEDGEN_IMAGE
    shell:
        "fedgen risk eval-placements --predictions {input.predictions} --site {wildcards.site}"
        " --outcome {params.outcome} --summary {input.summary} --round {params.round}"
        " --out {output.sums} 2> {log}"


rule risk_evaluate:
    input:
        counts=lambda wc: expand(
            "results/sumstats/{site}/risk/{evalset}.eval1.sums.json",
            site=SITES,
            evalset=wc.evalset,
        ),
        placements=lambda wc: expand(
            "results/sumstats/{site}/risk/{evalset}.eval2.sums.json",
            site=SITES,
            evalset=wc.evalset,
        ),
        site_metrics=lambda wc: expand(
            "results/sumstats/{site}/risk/{evalset}.site.sums.json",
            site=SITES,
            evalset=wc.evalset,
        ),
    output:
        json="results/risk/eval/{evalset}.json",
        metrics=report(
            "results/risk/eval/{evalset}.metrics.tsv",
            caption="../report/risk_metrics.rst",
            category="Risk prediction",
            subcategory="{evalset}",
            labels={"evaluation": "{evalset}", "figure": "metrics"},
        ),
        calibration=report(
            "results/risk/eval/{evalset}.calibration.tsv",
            caption="../report/risk_calibration.rst",
            category="Risk prediction",
            subcategory="{evalset}",
            labels={"evaluation": "{evalset}", "figure": "calibration table"},
        ),
        sites=report(
            "results/risk/eval/{evalset}.sites.tsv",
            caption="../report/risk_sites.rst",
            category="Risk prediction",
            subcategory="{evalset}",
            labels={"evaluation": "{evalset}", "figure": "per-site performance"},
        ),
        plot=report(
            "results/risk/eval/{evalset}.calibration.png",
            caption="../report/risk_calibration_plot.rst",
            category="Risk prediction",
            subcategory="{evalset}",
            labels={"evaluation": "{evalset}", "figure": "calibration plot"},
        ),
    params:
        min_n=config["egress"]["min_n"],
        min_cell=config["egress"]["min_cell"],
    log:
        "logs/risk/evaluate.{evalset}.log",
    localrule: True
    conda:
        "../envs/fedgen.yaml"
    container:
        FEDGEN_IMAGE
    shell:
        "fedgen risk evaluate --counts {input.counts} --placements {input.placements}"
        " --site-metrics {input.site_metrics} --min-n {params.min_n} --min-cell {params.min_cell}"
        " --out {output.json} --metrics-tsv {output.metrics}"
        " --calibration-tsv {output.calibration} --sites-tsv {output.sites}"
        " --plot {output.plot} 2> {log}"


rule risk_card:
    input:
        model="results/risk/all/{rmodel}/model.json",
        evaluations=expand("results/risk/eval/{evalset}.json", evalset=RISK["evaluate"]),
        plots=expand(
            "results/risk/eval/{evalset}.calibration.png", evalset=RISK["evaluate"]
        ),
    output:
        card=report(
            "results/risk/{rmodel}.model_card.html",
            caption="../report/risk_model_card.rst",
            category="Risk prediction",
            subcategory="model cards",
            labels={"model": "{rmodel}", "figure": "model card"},
        ),
    params:
        evaluations=get_risk_card_options,
    log:
        "logs/risk/card.{rmodel}.log",
    localrule: True
    conda:
        "../envs/fedgen.yaml"
    container:
        FEDGEN_IMAGE
    shell:
        "fedgen risk card --model {input.model} --name {wildcards.rmodel} {params.evaluations}"
        " --out {output.card} 2> {log}"
