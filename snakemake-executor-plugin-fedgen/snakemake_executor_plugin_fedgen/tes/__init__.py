"""GA4GH Task Execution Service 1.1: typed models, task states, the tags we use, and a client."""
