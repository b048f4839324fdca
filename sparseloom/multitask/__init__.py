"""The multi-task switch study (arXiv 2511.19986) at the face: replay, report and plots.

* :mod:`.replay` replays a task sequence under each registered loading method with real file I/O;
* :mod:`.study`  builds the setting (``stitching.multitask``), runs every comparison, writes ``switch.json``;
* :mod:`.plots`  the Jaccard heat-map of the tasks' tile sets.

The tiles, masks, manifests, stores and the setting itself live in ``stitching.multitask``.
"""
