# Phasing and imputation with Beagle 5.4 against the site's reference panel (at the site), one
# chromosome at a time and each chromosome in overlapping chunks run in parallel (config
# impute.chunk_mb, impute.overlap_mb; snakemake_fedgen/impute.py says how the overlap is
# resolved), as the Michigan and TOPMed imputation servers do it.


rule impute_panel_split:
    input:
        panel=get_reference_panel,
    output:
        # One indexed file per chromosome: each chunk reads its window by index.
        vcf=expand("sites/{{site}}/impute/panel/{chrom}.vcf.gz", chrom=CHROMOSOMES),
        tbi=expand("sites/{{site}}/impute/panel/{chrom}.vcf.gz.tbi", chrom=CHROMOSOMES),
    params:
        dir=lambda wildcards: f"sites/{wildcards.site}/impute/panel",
        chromosomes=",".join(CHROMOSOMES),
    log:
        "logs/{site}/impute_panel_split.log",
    resources:
        site=get_site,
        mem_mb=1000,
        runtime=60,
    conda:
        "../envs/fedgen.yaml"
    container:
        FEDGEN_IMAGE
    shell:
        "fedgen impute split-panel --panel {input.panel} --chromosomes {params.chromosomes}"
        " --out-dir {params.dir} > {log} 2>&1"


rule impute_target:
    input:
        pgen="sites/{site}/qc/qc.pgen",
        pvar="sites/{site}/qc/qc.pvar",
        psam="sites/{site}/qc/qc.psam",
    output:
        vcf="sites/{site}/impute/{chrom}/target.vcf.gz",
        tbi="sites/{site}/impute/{chrom}/target.vcf.gz.tbi",
    params:
        prefix=subpath(output.vcf, strip_suffix=".vcf.gz"),
    log:
        "logs/{site}/impute_target.{chrom}.log",
    threads: 2
    resources:
        site=get_site,
        mem_mb=2000,
        runtime=30,
    conda:
        "../envs/plink2.yaml"
    container:
        FEDGEN_IMAGE
    shell:
        "(plink2 --pgen {input.pgen} --pvar {input.pvar} --psam {input.psam} --chr {wildcards.chrom}"
        " --export vcf bgz id-paste=iid --threads {threads} --memory {resources.mem_mb}"
        " --out {params.prefix} && tabix -f -p vcf {output.vcf}) > {log} 2>&1"


# One chunk: its window cut out of the site's genotypes and the panel, then Beagle. The two
# steps run as one task (group), the window files never leave the task's site.
rule impute_window:
    input:
        target="sites/{site}/impute/{chrom}/target.vcf.gz",
        target_tbi="sites/{site}/impute/{chrom}/target.vcf.gz.tbi",
        panel="sites/{site}/impute/panel/{chrom}.vcf.gz",
        panel_tbi="sites/{site}/impute/panel/{chrom}.vcf.gz.tbi",
    output:
        target="sites/{site}/impute/{chrom}/chunk{chunk}.target.vcf.gz",
        panel="sites/{site}/impute/{chrom}/chunk{chunk}.panel.vcf.gz",
        status="sites/{site}/impute/{chrom}/chunk{chunk}.status.tsv",
    params:
        # The chunk's own positions and its window with flanks (config impute.*).
        start=get_chunk_field("start"),
        end=get_chunk_field("end"),
        window_start=get_chunk_field("window_start"),
        window_end=get_chunk_field("window_end"),
        min_markers=config["impute"]["min_chunk_markers"],
    log:
        "logs/{site}/impute_window.{chrom}.{chunk}.log",
    group:
        "impute_chunk"
    resources:
        site=get_site,
        mem_mb=1000,
        runtime=30,
    conda:
        "../envs/fedgen.yaml"
    container:
        FEDGEN_IMAGE
    shell:
        "fedgen impute window --target {input.target} --panel {input.panel}"
        " --chrom {wildcards.chrom} --chunk {wildcards.chunk} --start {params.start}"
        " --end {params.end} --window-start {params.window_start}"
        " --window-end {params.window_end} --min-markers {params.min_markers} --out-target {output.target}"
        " --out-panel {output.panel} --status {output.status} > {log} 2>&1"


rule impute_beagle:
    input:
        target="sites/{site}/impute/{chrom}/chunk{chunk}.target.vcf.gz",
        panel="sites/{site}/impute/{chrom}/chunk{chunk}.panel.vcf.gz",
        status="sites/{site}/impute/{chrom}/chunk{chunk}.status.tsv",
        genetic_map=get_genetic_map,
    output:
        vcf="sites/{site}/impute/{chrom}/chunk{chunk}.beagle.vcf.gz",
    params:
        prefix=subpath(output.vcf, strip_suffix=".vcf.gz"),
        # map=FILE, or nothing with datasets.genetic_map: null (Beagle: 1 cM per Mb).
        genetic_map=get_beagle_map,
        seed=config["impute"]["seed"],
    log:
        "logs/{site}/impute_beagle.{chrom}.{chunk}.log",
    benchmark:
        "benchmarks/{site}/impute_beagle.{chrom}.{chunk}.tsv"
    group:
        "impute_chunk"
    threads: 2
    resources:
        site=get_site,
        mem_mb=4000,
        runtime=120,
    conda:
        "../envs/beagle.yaml"
    container:
        BEAGLE_IMAGE
    shell:
        # A chunk with too few typed markers (its status says impute no) is not imputed: the
        # ligation skips it and counts its panel variants. Debian's `beagle` wrapper runs
        # `java -jar`; the heap size comes in through the JVM's standard environment variable.
        'if [ "$(awk \'$1 == "impute" {{print $2}}\' {input.status})" = no ]; then'
        " cp {input.target} {output.vcf} && echo 'chunk not imputed' > {log};"
        " else JAVA_TOOL_OPTIONS=-Xmx{resources.mem_mb}m beagle gt={input.target}"
        " ref={input.panel} {params.genetic_map} out={params.prefix} nthreads={threads}"
        " seed={params.seed} > {log} 2>&1; fi"


rule impute_ligate:
    input:
        vcf=get_chunk_files("beagle.vcf.gz"),
        status=get_chunk_files("status.tsv"),
    output:
        vcf="sites/{site}/impute/{chrom}/beagle.vcf.gz",
        counts="sites/{site}/impute/{chrom}/chunks.counts.tsv",
    log:
        "logs/{site}/impute_ligate.{chrom}.log",
    resources:
        site=get_site,
        mem_mb=1000,
        runtime=30,
    conda:
        "../envs/fedgen.yaml"
    container:
        FEDGEN_IMAGE
    shell:
        "fedgen impute ligate --vcf {input.vcf} --status {input.status}"
        " --output {output.vcf} --counts {output.counts} > {log} 2>&1"


rule impute_filter:
    input:
        vcf="sites/{site}/impute/{chrom}/beagle.vcf.gz",
    output:
        vcf="sites/{site}/impute/{chrom}/imputed.vcf.gz",
        counts="sites/{site}/impute/{chrom}/imputed.counts.tsv",
        # CHROM:POS:REF:ALT -> rsID of the panel (or the array): the export's rsid column.
        rsids="sites/{site}/impute/{chrom}/imputed.rsids.tsv",
    params:
        dr2=config["impute"]["min_dr2"],
    log:
        "logs/{site}/impute_filter.{chrom}.log",
    threads: 1
    resources:
        site=get_site,
        mem_mb=1000,
        runtime=30,
    conda:
        "../envs/bcftools.yaml"
    container:
        BCFTOOLS_IMAGE
    shell:
        "(bcftools view -i 'INFO/DR2>={params.dr2}' -Oz -o {output.vcf} {input.vcf}"
        " && printf 'step\\tquantity\\tcount\\nimputation\\tvariants_imputed\\t%s\\n"
        "imputation\\tvariants_dr2_passed\\t%s\\n'"
        " $(bcftools view -H {input.vcf} | wc -l) $(bcftools view -H {output.vcf} | wc -l)"
        " > {output.counts}"
        " && bcftools query -i 'ID~\"^rs\"' -f '%CHROM:%POS:%REF:%ALT\\t%ID\\n' {output.vcf}"
        " > {output.rsids}) 2> {log}"


rule impute_pgen:
    input:
        vcf="sites/{site}/impute/{chrom}/imputed.vcf.gz",
        psam="sites/{site}/qc/qc.psam",
    output:
        pgen="sites/{site}/impute/{chrom}/imputed.pgen",
        pvar="sites/{site}/impute/{chrom}/imputed.pvar",
        psam="sites/{site}/impute/{chrom}/imputed.psam",
    params:
        prefix=subpath(output.pgen, strip_suffix=".pgen"),
    log:
        "logs/{site}/impute_pgen.{chrom}.log",
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
        # The QC'd .psam restores FID/IID and sex that the VCF round trip drops. IDs become
        # CHROM:POS:REF:ALT (rule impute_filter kept the rsIDs aside for the export).
        "plink2 --vcf {input.vcf} dosage=DS --psam {input.psam} --set-all-var-ids @:#:\\$r:\\$a"
        " --new-id-max-allele-len 100 missing --threads {threads} --memory {resources.mem_mb}"
        " --make-pgen --out {params.prefix} > {log} 2>&1"


# The site's imputation, gathered over its chromosomes: counts (chunks, DR2) and rsIDs.
rule impute_gather:
    input:
        chunks=expand(
            "sites/{{site}}/impute/{chrom}/chunks.counts.tsv", chrom=CHROMOSOMES
        ),
        counts=expand(
            "sites/{{site}}/impute/{chrom}/imputed.counts.tsv", chrom=CHROMOSOMES
        ),
        rsids=expand(
            "sites/{{site}}/impute/{chrom}/imputed.rsids.tsv", chrom=CHROMOSOMES
        ),
    output:
        counts="sites/{site}/impute/imputed.counts.tsv",
        rsids="sites/{site}/impute/imputed.rsids.tsv",
    log:
        "logs/{site}/impute_gather.log",
    resources:
        site=get_site,
        mem_mb=500,
        runtime=10,
    conda:
        "../envs/fedgen.yaml"
    container:
        FEDGEN_IMAGE
    shell:
        "(fedgen impute sum-counts --output {output.counts} {input.chunks} {input.counts}"
        " && cat {input.rsids} > {output.rsids}) 2> {log}"


# Exact mode reads all chromosomes' dosages in one fileset.
rule impute_genome_pgen:
    input:
        vcf=expand("sites/{{site}}/impute/{chrom}/imputed.vcf.gz", chrom=CHROMOSOMES),
        psam="sites/{site}/qc/qc.psam",
    output:
        pgen="sites/{site}/impute/imputed.pgen",
        pvar="sites/{site}/impute/imputed.pvar",
        psam="sites/{site}/impute/imputed.psam",
    params:
        prefix=subpath(output.pgen, strip_suffix=".pgen"),
    log:
        "logs/{site}/impute_genome_pgen.log",
    threads: 2
    resources:
        site=get_site,
        mem_mb=2000,
        runtime=60,
    conda:
        "../envs/plink2.yaml"
    container:
        FEDGEN_IMAGE
    shell:
        "(bcftools concat -Oz -o {params.prefix}.vcf.gz {input.vcf}"
        " && plink2 --vcf {params.prefix}.vcf.gz dosage=DS --psam {input.psam}"
        " --set-all-var-ids @:#:\\$r:\\$a --new-id-max-allele-len 100 missing"
        " --threads {threads} --memory {resources.mem_mb} --make-pgen --out {params.prefix}"
        " && rm {params.prefix}.vcf.gz) > {log} 2>&1"
