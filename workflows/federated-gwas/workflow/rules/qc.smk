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
        genotypes=get_genotypes,
    output:
        pgen="sites/{site}/qc/raw.pgen",
        pvar="sites/{site}/qc/raw.pvar",
        psam="sites/{site}/qc/raw.psam",
        afreq="sites/{site}/qc/raw.afreq",
        counts="sites/{site}/qc/raw.import.counts.tsv",
    params:
        prefix=output_prefix,
        chromosomes=",".join(CHROMOSOMES),
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
        "../envs/fedgen.yaml"
    container:
        FEDGEN_IMAGE
    shell:
        # VCF/BCF (one or one per chromosome) or a PLINK 1/2 fileset, chr-prefixed or not, into
        # biallelic SNPs with CHROM:POS IDs (the panel alignment matches on them). What it drops
        # (other contigs, multi-allelic, indels, SNPs sharing a position) is counted; the
        # panel's indels come back through imputation.
        "fedgen qc import --genotypes {input.genotypes} --out-prefix {params.prefix}"
        " --chromosomes {params.chromosomes} --threads {threads} --memory {resources.mem_mb} > {log} 2>&1"


rule qc_phenotypes:
    input:
        pheno=get_phenotype_source,
        psam="sites/{site}/qc/raw.psam",
    output:
        table="sites/{site}/qc/phenotypes.tsv",
        counts="sites/{site}/qc/phenotypes.counts.tsv",
    log:
        "logs/{site}/qc_phenotypes.log",
    resources:
        site=get_site,
        mem_mb=500,
        runtime=10,
    conda:
        "../envs/fedgen.yaml"
    container:
        FEDGEN_IMAGE
    shell:
        # Keyed by FID+IID or IID alone; rewritten keyed as the genotypes are, with the counts
        # of matched, unmatched and duplicated IDs.
        "fedgen qc phenotypes --pheno {input.pheno} --psam {input.psam}"
        " --output {output.table} --counts {output.counts} 2> {log}"


rule qc_panel_pca:
    input:
        panel=get_reference_panel,
    output:
        weights="sites/{site}/qc/panel_pca.eigenvec.allele",
        eigenval="sites/{site}/qc/panel_pca.eigenval",
        afreq="sites/{site}/qc/panel_pca.afreq",
        prune="sites/{site}/qc/panel_pca.prune.in",
    params:
        prefix=subpath(output.eigenval, strip_suffix=".eigenval"),
        prune=config["qc"]["prune"],
        pcs=PANEL_PCS,
        approx=get_pca_mode,
    log:
        "logs/{site}/qc_panel_pca.log",
    benchmark:
        "benchmarks/{site}/qc_panel_pca.tsv"
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
        # Ancestry axes from the public reference panel (the same at every site): LD-pruned
        # common SNPs, their frequencies and each allele's weights for projecting samples.
        "(P='plink2 --threads {threads} --memory {resources.mem_mb}'"
        " && F='--snps-only just-acgt --max-alleles 2 --set-all-var-ids @:# --rm-dup exclude-all'"
        " && $P --vcf {input.panel} $F --maf {params.prune[maf]}"
        " --indep-pairwise {params.prune[window]} {params.prune[step]} {params.prune[r2]}"
        " --out {params.prefix}"
        " && $P --vcf {input.panel} $F --extract {output.prune} --freq"
        " --pca {params.pcs} allele-wts {params.approx} --out {params.prefix}) > {log} 2>&1"


rule qc_project_pcs:
    input:
        pgen="sites/{site}/qc/aligned.pgen",
        pvar="sites/{site}/qc/aligned.pvar",
        psam="sites/{site}/qc/aligned.psam",
        weights="sites/{site}/qc/panel_pca.eigenvec.allele",
        afreq="sites/{site}/qc/panel_pca.afreq",
    output:
        pcs="sites/{site}/qc/pcs.tsv",
    params:
        prefix=subpath(output.pcs, strip_suffix=".tsv"),
        last_column=PANEL_PCS + 5,
    log:
        "logs/{site}/qc_project_pcs.log",
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
        # The site's samples on the panel's axes (plink2 --score with the allele weights and the
        # panel's frequencies): no minimum sample count, the same PCs at every site.
        "(plink2 --pgen {input.pgen} --pvar {input.pvar} --psam {input.psam}"
        " --read-freq {input.afreq} --score {input.weights} 2 5 header-read"
        " variance-standardize --score-col-nums 6-{params.last_column}"
        " --threads {threads} --memory {resources.mem_mb} --out {params.prefix}"
        " && sed '1s/_AVG//g' {params.prefix}.sscore > {output.pcs}) > {log} 2>&1"


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
        prune="sites/{site}/qc/panel_pca.prune.in",
        afreq="sites/{site}/qc/panel_pca.afreq",
        pcs="sites/{site}/qc/pcs.tsv",
    output:
        pgen="sites/{site}/qc/samples.pgen",
        pvar="sites/{site}/qc/samples.pvar",
        psam="sites/{site}/qc/samples.psam",
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
        maf=config["qc"]["maf"],
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
        # Heterozygosity F on the panel's pruned SNPs with the panel's frequencies (no minimum
        # site size), judged against what each sample's ancestry predicts (projected PCs).
        # KING on every SNP above the MAF threshold, not on the pruned few hundred: on too few
        # markers its noise reaches the kinship cutoffs and flags unrelated people.
        "(P='plink2 --threads {threads} --memory {resources.mem_mb}'; D={params.dir}"
        " && $P --pfile $D/aligned --geno {params.geno} --make-pgen --out $D/variant_call_rate"
        " && $P --pfile $D/variant_call_rate --mind {params.mind} --make-pgen"
        " --out $D/sample_call_rate"
        " && $P --pfile $D/sample_call_rate --extract {input.prune} --read-freq {input.afreq}"
        " --het --out $D/heterozygosity"
        " && fedgen qc het-outliers --het $D/heterozygosity.het --sd {params.het_sd}"
        " --eigenvec {input.pcs} --pcs {params.het_pcs} --output {output.het_outliers}"
        " && $P --pfile $D/sample_call_rate --remove {output.het_outliers} --make-pgen"
        " --out $D/heterozygosity"
        " && $P --pfile $D/heterozygosity --maf {params.maf}"
        " --king-cutoff {params.king_duplicate} --out $D/duplicates"
        " && $P --pfile $D/heterozygosity --remove {output.dup_removed} --make-pgen"
        " --out $D/duplicates"
        " && $P --pfile $D/duplicates --maf {params.maf}"
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


# The QC counts need only the QC chain: when imputation or the GWAS fails at a site, the counts
# up to there still reach the coordinator (the profiles keep going after a failed job).
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
        import_counts="sites/{site}/qc/raw.import.counts.tsv",
        pheno_counts="sites/{site}/qc/phenotypes.counts.tsv",
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
        " --table {input.import_counts} --table {input.pheno_counts}"
        " --table {input.align_counts} 2> {log}"


rule imputation_counts:
    input:
        counts="sites/{site}/impute/imputed.counts.tsv",
    output:
        counts="results/sumstats/{site}/imputation_counts.tsv",
    params:
        min_cell=config["egress"]["min_cell"],
    log:
        "logs/{site}/imputation_counts.log",
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
        " --table {input.counts} 2> {log}"
