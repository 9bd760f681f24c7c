"""Faithfulness metrics of a saliency map (the JSON's ``evaluation`` block), on the same batched core.

:mod:`~explain_cli.metrics.curves` (deletion and insertion, with :mod:`~explain_cli.metrics.road`),
:mod:`~explain_cli.metrics.localisation` (pointing game, energy in mask),
:mod:`~explain_cli.metrics.stability` (top-k Jaccard over seeds) and
:mod:`~explain_cli.metrics.sanity` (model randomisation) are library functions over maps, masks
and score vectors; :mod:`~explain_cli.metrics.suite` picks and runs the ones a run's options ask for.
"""
