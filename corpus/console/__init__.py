"""The corpus in the web console: exports and optimisation reports served by the data worker, which owns
the embedded stores (``routes``), and the worker's command that adds them (``commands``)."""
