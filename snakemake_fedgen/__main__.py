import sys

from snakemake_fedgen.cli import main

sys.exit(main())
