"""Egress: what may leave a site (the airlock) and how counts are made safe to leave."""
