"""A GA4GH Beacon v2 at each node, and the query budget that stops membership inference."""
