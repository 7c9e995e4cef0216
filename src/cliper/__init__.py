"""cliper: CLIP-enhanced multimodal recommendation.

The package reads like the pipeline: ``data`` (interaction graphs) and ``catalog``
(item metadata) -> ``views`` (one prompt per field) -> ``encoders`` (CLIP-family
models) -> ``features`` (the feature store and the item-feature object models read)
-> ``fusion`` -> ``models`` (recommenders behind one contract) -> ``training`` and
``evaluation`` -> ``experiments`` (the paper's tables and plots) -> ``cli``.
"""

__version__ = "0.1.0"
