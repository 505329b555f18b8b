# The run's RO-Crate (Workflow Run Crate profile), written at the coordinator once every other
# final output exists. `fedgen provenance crate` lists every site task of this run from its
# site's node (TES tag fedgen_run: the fedgen executor exports its tag as $FEDGEN_RUN_ID to the
# localrules of its run, so --fedgen-run-id and reruns in the same directory agree), the node's
# provenance record of each task, the sites' DUO decisions for config `purpose`, and the outputs
# below with their SHA-256. Site tokens come from the token_env variables of this process and
# are never written anywhere. Under dataset_access: local there are no site tasks: the crate
# still records the workflow, purpose, DUO decisions and outputs, and says why it lists no task.


rule provenance_crate:
    input:
        outputs=get_crate_outputs(),
    output:
        crate=directory(PROVENANCE_CRATE),
    params:
        sites=config["sites"],
        snakefile=workflow.main_snakefile,
        options=get_crate_options,
    log:
        "logs/provenance/ro-crate.log",
    localrule: True
    conda:
        "../envs/fedgen.yaml"
    shell:
        "fedgen provenance crate --sites {params.sites} --workflow {params.snakefile:q}"
        " {params.options} --out {output.crate} 2> {log}"
