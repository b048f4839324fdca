"""On-demand multi-task sparsity (arXiv 2511.19986): shared tiles, aligned masks, differential loading.

Several heads (:mod:`.heads`; each serves one task of a workload) share one backbone; each has its
own tile mask. Modules, in data-flow order:

* :mod:`.heads`    the four digits heads (labellings and classifiers), accuracy under a tile mask (measured);
* :mod:`.backbone` the shared backbones (the zoo's digits_resnet, a small MLP) and how they run masked;
* :mod:`.tiles`    block-granular splitting into content-addressed tiles (sha256), reassembly;
* :mod:`.store`    tiles in the one pool (``stitching.pool``): packed safetensors, indexed in its manifest;
* :mod:`.masks`    per-head masks from |w| x |grad| importance and overlap-aware alignment, Jaccard;
* :mod:`.manifest` which digest each head needs where; monolithic per-head files for the baseline;
* :mod:`.loading`  differential loading into runnable weights, cold-cache I/O measurement, I/O model;
* :mod:`.preload`  task-transition graph and the budgeted correlation-aware pre-loader;
* :mod:`.setting`  builds all of the above in one call.

The study that replays switches under each loading method, writes ``switch.json`` and draws the
Jaccard heat-map is the face's: :mod:`sparseloom.multitask`. This subpackage imports nothing
outside ``stitching``.
"""
