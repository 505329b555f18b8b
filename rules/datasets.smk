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
