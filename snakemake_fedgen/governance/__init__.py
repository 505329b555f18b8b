"""GA4GH governance standards: DUO consent checks, Passports, refget, provenance, Phenopackets."""
