# Per-site QC with PLINK 2 (runs at the site). Every step keeps its .psam/.pvar so that
# `fedgen qc counts` can say how many samples and variants each step removed.


rule qc_panel_alleles:
    input:
        panel=get_reference_panel,
    output:
        alleles="sites/{site}/qc/panel_alleles.tsv",
    log:
        "logs/{site}/qc_panel_alleles.log",
    resources:
        site=get_site,
        mem_mb=1000,
        runtime=20,
    conda:
        "../envs/bcftools.yaml"
    container:
        BCFTOOLS_IMAGE
    shell:
        "(bcftools view -m2 -M2 -v snps -Ou {input.panel}"
        " | bcftools +fill-tags -Ou -- -t AF"
        " | bcftools query -f '%CHROM\\t%POS\\t%REF\\t%ALT\\t%AF\\n' > {output.alleles}) 2> {log}"


rule qc_import:
    input:
        vcf=get_genotypes,
    output:
        pgen="sites/{site}/qc/raw.pgen",
        pvar="sites/{site}/qc/raw.pvar",
        psam="sites/{site}/qc/raw.psam",
        afreq="sites/{site}/qc/raw.afreq",
    params:
        prefix=output_prefix,
    log:
        "logs/{site}/qc_import.log",
    benchmark:
        "benchmarks/{site}/qc_import.tsv"
    threads: 2
    resources:
        site=get_site,
        mem_mb=2000,
        runtime=30,
    conda:
        "../envs/plink2.yaml"
    container:
        PLINK2_IMAGE
    shell:
        # Biallelic SNPs with position IDs: the panel alignment matches on CHROM:POS and a
        # position seen twice cannot be aligned, so all copies are dropped.
        "(plink2 --vcf {input.vcf} --double-id --vcf-half-call missing"
        " --snps-only just-acgt --max-alleles 2 --set-all-var-ids @:# --rm-dup exclude-all"
        " --threads {threads} --memory {resources.mem_mb} --make-pgen --out {params.prefix}"
        " && plink2 --pfile {params.prefix} --freq --threads {threads}"
        " --memory {resources.mem_mb} --out {params.prefix}) > {log} 2>&1"


rule qc_align:
    input:
        pgen="sites/{site}/qc/raw.pgen",
        pvar="sites/{site}/qc/raw.pvar",
        psam="sites/{site}/qc/raw.psam",
        afreq="sites/{site}/qc/raw.afreq",
        panel="sites/{site}/qc/panel_alleles.tsv",
    output:
        pgen="sites/{site}/qc/aligned.pgen",
        pvar="sites/{site}/qc/aligned.pvar",
        psam="sites/{site}/qc/aligned.psam",
        counts="sites/{site}/qc/aligned.counts.tsv",
        flips="sites/{site}/qc/aligned.update_alleles",
        ref_alleles="sites/{site}/qc/aligned.ref_allele",
        excluded="sites/{site}/qc/aligned.exclude",
    params:
        prefix=output_prefix,
        max_af_diff=config["qc"]["align"]["max_af_diff"],
        ambiguous_maf=config["qc"]["align"]["ambiguous_maf"],
    log:
        "logs/{site}/qc_align.log",
    threads: 2
    resources:
        site=get_site,
        mem_mb=2000,
        runtime=30,
    conda:
        "../envs/fedgen.yaml"
    container:
        FEDGEN_IMAGE
    shell:
        # Strand flips are renamed (--update-alleles), REF/ALT swaps rotated to the panel's REF
        # (--ref-allele force): the flipped or swapped batch is fixed, not dropped.
        "(fedgen qc align --afreq {input.afreq} --panel-alleles {input.panel}"
        " --out-prefix {params.prefix} --max-af-diff {params.max_af_diff}"
        " --ambiguous-maf {params.ambiguous_maf}"
        " && plink2 --pgen {input.pgen} --pvar {input.pvar} --psam {input.psam}"
        " --update-alleles {output.flips} --ref-allele force {output.ref_alleles} 2 1"
        " --exclude {output.excluded} --threads {threads} --memory {resources.mem_mb}"
        " --make-pgen --out {params.prefix}) > {log} 2>&1"


rule qc_samples:
    input:
        pgen="sites/{site}/qc/aligned.pgen",
        pvar="sites/{site}/qc/aligned.pvar",
        psam="sites/{site}/qc/aligned.psam",
    output:
        pgen="sites/{site}/qc/samples.pgen",
        pvar="sites/{site}/qc/samples.pvar",
        psam="sites/{site}/qc/samples.psam",
        prune="sites/{site}/qc/samples.prune.in",
        geno_pvar="sites/{site}/qc/variant_call_rate.pvar",
        geno_psam="sites/{site}/qc/variant_call_rate.psam",
        mind_pvar="sites/{site}/qc/sample_call_rate.pvar",
        mind_psam="sites/{site}/qc/sample_call_rate.psam",
        het_pvar="sites/{site}/qc/heterozygosity.pvar",
        het_psam="sites/{site}/qc/heterozygosity.psam",
        het_outliers="sites/{site}/qc/heterozygosity.outliers",
        dup_pvar="sites/{site}/qc/duplicates.pvar",
        dup_psam="sites/{site}/qc/duplicates.psam",
        dup_removed="sites/{site}/qc/duplicates.king.cutoff.out.id",
        rel_removed="sites/{site}/qc/relatedness.king.cutoff.out.id",
    params:
        dir=subpath(output.pgen, parent=True),
        geno=config["qc"]["geno"],
        mind=config["qc"]["mind"],
        prune=config["qc"]["prune"],
        het_sd=config["qc"]["het_sd"],
        het_pcs=config["qc"]["het_pcs"],
        king_duplicate=config["qc"]["king_duplicate"],
        king_related=config["qc"]["king_related"],
    log:
        "logs/{site}/qc_samples.log",
    benchmark:
        "benchmarks/{site}/qc_samples.tsv"
    threads: 2
    resources:
        site=get_site,
        mem_mb=2000,
        runtime=60,
    conda:
        "../envs/fedgen.yaml"
    container:
        FEDGEN_IMAGE
    shell:
        # Heterozygosity F is judged against what each sample's ancestry predicts (PCs): a
        # site mixing populations has population-specific heterozygosity.
        "(P='plink2 --threads {threads} --memory {resources.mem_mb}'; D={params.dir}"
        " && $P --pfile $D/aligned --geno {params.geno} --make-pgen --out $D/variant_call_rate"
        " && $P --pfile $D/variant_call_rate --mind {params.mind} --make-pgen"
        " --out $D/sample_call_rate"
        " && $P --pfile $D/sample_call_rate --maf {params.prune[maf]}"
        " --indep-pairwise {params.prune[window]} {params.prune[step]} {params.prune[r2]}"
        " --out $D/samples"
        " && $P --pfile $D/sample_call_rate --extract {output.prune} --het"
        " --pca {params.het_pcs} --out $D/heterozygosity"
        " && fedgen qc het-outliers --het $D/heterozygosity.het --sd {params.het_sd}"
        " --eigenvec $D/heterozygosity.eigenvec --output {output.het_outliers}"
        " && $P --pfile $D/sample_call_rate --remove {output.het_outliers} --make-pgen"
        " --out $D/heterozygosity"
        " && $P --pfile $D/heterozygosity --extract {output.prune}"
        " --king-cutoff {params.king_duplicate} --out $D/duplicates"
        " && $P --pfile $D/heterozygosity --remove {output.dup_removed} --make-pgen"
        " --out $D/duplicates"
        " && $P --pfile $D/duplicates --extract {output.prune}"
        " --king-cutoff {params.king_related} --out $D/relatedness"
        " && $P --pfile $D/duplicates --remove {output.rel_removed} --make-pgen --out $D/samples"
        " && rm -f $D/variant_call_rate.pgen $D/sample_call_rate.pgen $D/heterozygosity.pgen"
        " $D/duplicates.pgen) > {log} 2>&1"


rule qc_sex_check:
    input:
        pgen="sites/{site}/qc/samples.pgen",
        pvar="sites/{site}/qc/samples.pvar",
        psam="sites/{site}/qc/samples.psam",
        pheno=get_phenotypes,
    output:
        pgen="sites/{site}/qc/sex_check.pgen",
        pvar="sites/{site}/qc/sex_check.pvar",
        psam="sites/{site}/qc/sex_check.psam",
        mismatched="sites/{site}/qc/sex_check.mismatched",
    params:
        prefix=output_prefix,
    log:
        "logs/{site}/qc_sex_check.log",
    threads: 2
    resources:
        site=get_site,
        mem_mb=2000,
        runtime=30,
    conda:
        "../envs/plink2.yaml"
    container:
        PLINK2_IMAGE
    shell:
        # Only with X chromosome genotypes; otherwise the samples pass through unchanged.
        # --check-sex needs plink2 >= 2.00a4 (the pinned toolset).
        "(P='plink2 --threads {threads} --memory {resources.mem_mb}'"
        " && if grep -q -E '^(X|chrX|23)[[:space:]]' {input.pvar}; then"
        " $P --pgen {input.pgen} --pvar {input.pvar} --psam {input.psam}"
        " --update-sex {input.pheno} col-num=3"
        " --check-sex --out {params.prefix}"
        ' && awk \'NR > 1 && $5 == "PROBLEM" {{print $1"\\t"$2}}\' {params.prefix}.sexcheck'
        " > {output.mismatched}; else : > {output.mismatched}; fi"
        " && $P --pgen {input.pgen} --pvar {input.pvar} --psam {input.psam}"
        " --remove {output.mismatched} --make-pgen --out {params.prefix}) > {log} 2>&1"


rule qc_variants:
    input:
        pgen="sites/{site}/qc/sex_check.pgen",
        pvar="sites/{site}/qc/sex_check.pvar",
        psam="sites/{site}/qc/sex_check.psam",
    output:
        pgen="sites/{site}/qc/qc.pgen",
        pvar="sites/{site}/qc/qc.pvar",
        psam="sites/{site}/qc/qc.psam",
        maf_pvar="sites/{site}/qc/maf.pvar",
        maf_psam="sites/{site}/qc/maf.psam",
    params:
        dir=subpath(output.pgen, parent=True),
        maf=config["qc"]["maf"],
        hwe=config["qc"]["hwe"],
    log:
        "logs/{site}/qc_variants.log",
    threads: 2
    resources:
        site=get_site,
        mem_mb=2000,
        runtime=30,
    conda:
        "../envs/plink2.yaml"
    container:
        PLINK2_IMAGE
    shell:
        "(P='plink2 --threads {threads} --memory {resources.mem_mb}'; D={params.dir}"
        " && $P --pfile $D/sex_check --maf {params.maf} --make-pgen --out $D/maf"
        " && $P --pfile $D/maf --hwe {params.hwe} --make-pgen --out $D/qc"
        " && rm -f $D/maf.pgen) > {log} 2>&1"


rule qc_pca:
    input:
        pgen="sites/{site}/qc/qc.pgen",
        pvar="sites/{site}/qc/qc.pvar",
        psam="sites/{site}/qc/qc.psam",
        prune="sites/{site}/qc/samples.prune.in",
    output:
        eigenvec="sites/{site}/qc/pca.eigenvec",
        eigenval="sites/{site}/qc/pca.eigenval",
    params:
        prefix=output_prefix,
        pcs=config["pcs"],
        approx=get_pca_mode,
    log:
        "logs/{site}/qc_pca.log",
    benchmark:
        "benchmarks/{site}/qc_pca.tsv"
    threads: 2
    resources:
        site=get_site,
        mem_mb=2000,
        runtime=30,
    conda:
        "../envs/plink2.yaml"
    container:
        PLINK2_IMAGE
    shell:
        "plink2 --pgen {input.pgen} --pvar {input.pvar} --psam {input.psam}"
        " --extract {input.prune} --pca {params.pcs} {params.approx} --threads {threads}"
        " --memory {resources.mem_mb} --out {params.prefix} > {log} 2>&1"


rule qc_counts:
    input:
        raw_psam="sites/{site}/qc/raw.psam",
        raw_pvar="sites/{site}/qc/raw.pvar",
        aligned_psam="sites/{site}/qc/aligned.psam",
        aligned_pvar="sites/{site}/qc/aligned.pvar",
        align_counts="sites/{site}/qc/aligned.counts.tsv",
        geno_psam="sites/{site}/qc/variant_call_rate.psam",
        geno_pvar="sites/{site}/qc/variant_call_rate.pvar",
        mind_psam="sites/{site}/qc/sample_call_rate.psam",
        mind_pvar="sites/{site}/qc/sample_call_rate.pvar",
        het_psam="sites/{site}/qc/heterozygosity.psam",
        het_pvar="sites/{site}/qc/heterozygosity.pvar",
        dup_psam="sites/{site}/qc/duplicates.psam",
        dup_pvar="sites/{site}/qc/duplicates.pvar",
        rel_psam="sites/{site}/qc/samples.psam",
        rel_pvar="sites/{site}/qc/samples.pvar",
        sex_psam="sites/{site}/qc/sex_check.psam",
        sex_pvar="sites/{site}/qc/sex_check.pvar",
        maf_psam="sites/{site}/qc/maf.psam",
        maf_pvar="sites/{site}/qc/maf.pvar",
        qc_psam="sites/{site}/qc/qc.psam",
        qc_pvar="sites/{site}/qc/qc.pvar",
        impute_counts="sites/{site}/impute/imputed.counts.tsv",
    output:
        counts="results/sumstats/{site}/qc_counts.tsv",
        full="sites/{site}/qc/qc_counts.full.tsv",
    params:
        dir=subpath(input.raw_psam, parent=True),
        min_cell=config["egress"]["min_cell"],
    log:
        "logs/{site}/qc_counts.log",
    resources:
        site=get_site,
        mem_mb=500,
        runtime=10,
    conda:
        "../envs/fedgen.yaml"
    container:
        FEDGEN_IMAGE
    shell:
        "fedgen qc counts --min-cell {params.min_cell} --output {output.counts}"
        " --full-output {output.full}"
        " --fileset input={params.dir}/raw --fileset align={params.dir}/aligned"
        " --fileset variant_call_rate={params.dir}/variant_call_rate"
        " --fileset sample_call_rate={params.dir}/sample_call_rate"
        " --fileset heterozygosity={params.dir}/heterozygosity"
        " --fileset duplicates={params.dir}/duplicates"
        " --fileset relatedness={params.dir}/samples"
        " --fileset sex_check={params.dir}/sex_check"
        " --fileset maf={params.dir}/maf --fileset hwe={params.dir}/qc"
        " --table {input.align_counts} --table {input.impute_counts} 2> {log}"
