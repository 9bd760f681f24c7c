"""Pictures and pages drawn from results, with numpy and Pillow (no torch, no matplotlib).

``figures`` holds the entry points (heatmap, segments, comparison) and ``curves`` the
faithfulness curves; each returns a PIL image that ``layout.to_png`` encodes. ``captions`` words
every title and caption; ``scale``, ``colormaps``, ``boundaries``, ``panels`` and ``layout`` are
the figures' parts. From results already written, ``report`` writes the HTML page and
``montage`` the ``explain compare`` picture, both reading them with ``records``.
"""
