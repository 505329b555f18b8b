"""A GA4GH Beacon v2 at each node: counts and yes/no answers about the site's datasets.

``config`` (the ``beacon`` block of node.yaml), ``variants`` (region queries on the indexed
VCF/BCF with bcftools), ``individuals`` (filters on the phenotype table or Phenopackets),
``responses`` (Beacon v2 envelopes), ``budget`` (the per-caller query budget that stops
membership inference), ``api`` (the router the node mounts under ``/api``) and ``network`` (the
fan-out of ``fedgen discover``). Records never leave: the finest answer is a count, and counts
below ``min_cell`` are reported as the floor.
"""
