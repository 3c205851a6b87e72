"""The local web app behind ``bargainnet serve`` (optional extra ``bargainnet[web]``: gradio).

:mod:`bargainnet.web.app` holds the request handlers as plain functions (testable without a
server) and :func:`bargainnet.web.app.build_app`, which wires them into a Gradio ``Blocks``.
Nothing here imports gradio at import time, so ``bargainnet`` works without it.
"""
