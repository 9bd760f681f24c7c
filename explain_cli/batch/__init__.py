"""`explain batch`: YAML-configured runs over many inputs, resumable, shardable, failure-isolated.

:mod:`~explain_cli.batch.plan` turns a config into items (one job, input(s) and method each) and
shards; :mod:`~explain_cli.batch.run` splits off the complete items and hands the pending ones to
a backend, :mod:`~explain_cli.batch.local` (this process) or :mod:`~explain_cli.batch.ray_backend`
(Ray actors), through one ``run_pending`` signature; :mod:`~explain_cli.batch.rows` makes the
summary's rows and writes it.
"""
