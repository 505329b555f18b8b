# Site datasets as workflow inputs. With the fedgen executor (dataset_access: reference) the
# coordinator only writes a small reference naming the site and the dataset's site-side URL; the
# data itself never moves. dataset_access: local is for a site running the workflow on its own
# data (and for comparing with Snakemake's local executor): the file is linked in place.


if config["dataset_access"] == "reference":

    rule dataset_reference:
        output:
            ref="sites/{site}/datasets/{dataset}",
        params:
            sites=config["sites"],
            name=get_dataset_name,
        log:
            "logs/{site}/datasets/{dataset}.log",
        localrule: True
        conda:
            "../envs/fedgen.yaml"
        shell:
            "fedgen sites ref --sites {params.sites} --site {wildcards.site}"
            " --dataset {params.name} --output {output.ref} 2> {log}"

    rule folder_reference:
        output:
            # A folder dataset (url ending in /: phenopackets, genotypes as per-chromosome VCFs
            # or a PLINK fileset): the reference is a directory here.
            ref=directory("sites/{site}/datasets/{folder}"),
        params:
            sites=config["sites"],
            name=get_folder_dataset_name,
        log:
            "logs/{site}/datasets/{folder}.log",
        localrule: True
        conda:
            "../envs/fedgen.yaml"
        shell:
            "fedgen sites ref --sites {params.sites} --site {wildcards.site}"
            " --dataset {params.name} --output {output.ref} 2> {log}"

else:

    rule dataset_link:
        output:
            data="sites/{site}/datasets/{dataset}",
        params:
            path=get_dataset_local_path,
        log:
            "logs/{site}/datasets/{dataset}.log",
        localrule: True
        conda:
            "../envs/fedgen.yaml"
        shell:
            "ln -sfn {params.path:q} {output.data} 2> {log}"

    rule folder_link:
        output:
            data=directory("sites/{site}/datasets/{folder}"),
        params:
            path=get_dataset_local_path,
        log:
            "logs/{site}/datasets/{folder}.log",
        localrule: True
        conda:
            "../envs/fedgen.yaml"
        shell:
            "ln -sfn {params.path:q} {output.data} 2> {log}"


# A site holding its phenotypes as Phenopacket v2 files (registry `format: phenopackets`) gets
# its phenotype/covariate table made at the site; it is individual-level data and stays there.
rule phenopackets_columns:
    output:
        # The further columns (clinical data) each phenopacket site's table gets: a mapping
        # of column -> term, sent to the sites with the task.
        columns="phenopackets/columns.yaml",
    params:
        columns=get_phenopackets_columns(),
    log:
        "logs/phenopackets_columns.log",
    localrule: True
    run:
        Path(output.columns).write_text(
            yaml.safe_dump(dict(params.columns), sort_keys=False)
            if params.columns
            else "{}\n"
        )


rule phenotypes_from_phenopackets:
    input:
        packets=get_phenopackets_folder,
        columns="phenopackets/columns.yaml",
    output:
        table="sites/{site}/phenotypes/phenopackets.tsv",
    params:
        qt_assay=lambda wildcards: get_phenopackets_trait(wildcards, "qt", "term"),
        qt_name=lambda wildcards: get_phenopackets_trait(wildcards, "qt", "name"),
        bt_terms=lambda wildcards: get_phenopackets_trait(wildcards, "bt", "term"),
        bt_name=lambda wildcards: get_phenopackets_trait(wildcards, "bt", "name"),
        unmentioned=config["phenopackets"]["unmentioned"],
    log:
        "logs/{site}/phenotypes_from_phenopackets.log",
    resources:
        site=get_site,
        mem_mb=500,
        runtime=10,
    conda:
        "../envs/fedgen.yaml"
    container:
        FEDGEN_IMAGE
    shell:
        # Every argument has a value ("none": no such trait): one template for any config.
        "fedgen phenopackets to-table {input.packets} --out {output.table}"
        " --qt {params.qt_assay} --qt-name {params.qt_name} --bt {params.bt_terms}"
        " --bt-name {params.bt_name} --bt-unmentioned {params.unmentioned}"
        " --columns {input.columns} 2> {log}"
