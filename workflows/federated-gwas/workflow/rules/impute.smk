# Phasing and imputation with Beagle 5.4 against the site's reference panel (at the site).


rule impute_target:
    input:
        pgen="sites/{site}/qc/qc.pgen",
        pvar="sites/{site}/qc/qc.pvar",
        psam="sites/{site}/qc/qc.psam",
    output:
        vcf="sites/{site}/impute/target.vcf.gz",
    params:
        prefix=subpath(output.vcf, strip_suffix=".vcf.gz"),
    log:
        "logs/{site}/impute_target.log",
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
        " --export vcf bgz id-paste=iid --threads {threads} --memory {resources.mem_mb}"
        " --out {params.prefix} > {log} 2>&1"


rule impute_beagle:
    input:
        target="sites/{site}/impute/target.vcf.gz",
        panel=get_reference_panel,
        genetic_map=get_genetic_map,
    output:
        vcf="sites/{site}/impute/beagle.vcf.gz",
    params:
        prefix=subpath(output.vcf, strip_suffix=".vcf.gz"),
        # map=FILE, or nothing with datasets.genetic_map: null (Beagle: 1 cM per Mb).
        genetic_map=get_beagle_map,
        seed=config["impute"]["seed"],
    log:
        "logs/{site}/impute_beagle.log",
    benchmark:
        "benchmarks/{site}/impute_beagle.tsv"
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
        # Debian's `beagle` wrapper runs `java -jar`; the heap size comes in through the JVM's
        # standard environment variable.
        "JAVA_TOOL_OPTIONS=-Xmx{resources.mem_mb}m beagle gt={input.target} ref={input.panel}"
        " {params.genetic_map} out={params.prefix} nthreads={threads} seed={params.seed}"
        " > {log} 2>&1"


rule impute_filter:
    input:
        vcf="sites/{site}/impute/beagle.vcf.gz",
    output:
        vcf="sites/{site}/impute/imputed.vcf.gz",
        counts="sites/{site}/impute/imputed.counts.tsv",
        # CHROM:POS:REF:ALT -> rsID of the panel (or the array): the export's rsid column.
        rsids="sites/{site}/impute/imputed.rsids.tsv",
    params:
        dr2=config["impute"]["min_dr2"],
    log:
        "logs/{site}/impute_filter.log",
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
        vcf="sites/{site}/impute/imputed.vcf.gz",
        psam="sites/{site}/qc/qc.psam",
    output:
        pgen="sites/{site}/impute/imputed.pgen",
        pvar="sites/{site}/impute/imputed.pvar",
        psam="sites/{site}/impute/imputed.psam",
    params:
        prefix=subpath(output.pgen, strip_suffix=".pgen"),
    log:
        "logs/{site}/impute_pgen.log",
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
