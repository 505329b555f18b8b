"""snakemake-fedgen: federated genomics for Snakemake over GA4GH TES.

Site jobs run at the site that holds the data; only summary statistics come back.
"""

__version__ = "0.2.0"
