"""Serving: a trained run as a bundle, an index over it, and an HTTP app with a web page.

Flows one way: ``bundle`` (written and verified) -> ``index`` (exact, faiss) -> ``app``
(routes that only call the index and the bundle) -> ``static/`` (the page). Only
``export`` (run folder -> bundle) imports training code; the server never does.
"""
