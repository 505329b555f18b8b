"""The ``fedgen`` Snakemake executor: site jobs become GA4GH TES tasks at their site."""
