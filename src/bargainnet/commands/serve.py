"""``bargainnet serve``: the local web app (needs the optional extra ``bargainnet[web]``).

Starts a Gradio page on http://HOST:PORT (default 127.0.0.1:7860, this machine only) to
harmonize your own images in the browser: a composite and its mask (uploaded or painted), or a
cut-out pasted on a background; before/after slider, inharmony before and after, background
harmonization, full-resolution PNG download. Scripts can call the same server through its HTTP
API (``/harmonize``, ``/paste``; see the README's "Web app"). Ctrl-C stops it.

``--host 0.0.0.0`` makes the page reachable from other machines: there is no login, so do that
only on a network you trust.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

from ..errors import EXIT_OK, UserError

from .common import SIZE_HELP

HELP = "start the local web app (browser page + HTTP API) to harmonize images interactively"


class ServeError(UserError):
    """The server cannot start (port taken, gradio missing, ...)."""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = __doc__.split("\n\n", 1)[1]
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--weights", help="weights (.safetensors, or .onnx); default: the installed default model")
    parser.add_argument("--backend", choices=("pytorch", "onnxruntime"), default="pytorch")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto (default cpu)")
    parser.add_argument("--size", type=int, help=SIZE_HELP)
    parser.add_argument("--concurrency", type=int, default=2,
                        help="harmonizations run at once; more requests wait in the queue (default 2)")
    parser.add_argument("--max-pixels", type=int, help="refuse images with more pixels (default 100,000,000)")
    parser.add_argument("--max-file-size", default="200mb", help="largest upload (default 200mb)")


def run(args) -> int:
    if not 0 < args.port < 65536:
        raise ServeError(f"--port must be in 1..65535, got {args.port}")
    if args.concurrency < 1:
        raise ServeError(f"--concurrency must be >= 1, got {args.concurrency}")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # a local app phones nobody
    from ..errors import require_extra

    require_extra("web", "gradio")

    from ..inference import Harmonizer
    from ..web.app import WebApp, launch

    harmonizer = Harmonizer.from_pretrained(
        args.weights, backend=args.backend, device=args.device, size=args.size, max_pixels=args.max_pixels
    )
    app = WebApp(harmonizer, weights=args.weights)
    try:
        demo = launch(app, host=args.host, port=args.port, concurrency=args.concurrency, max_file_size=args.max_file_size)
    except OSError as err:
        app.close()
        raise ServeError(f"cannot listen on {args.host}:{args.port} ({err}); choose another --port") from None
    print(f"bargainnet serve: {demo.local_url} (Ctrl-C to stop)", flush=True)
    stop = threading.Event()
    # Ctrl-C and SIGTERM (service managers, `kill`) stop cleanly; SIGINT is set explicitly because
    # a shell starts background jobs with it ignored, and `kill -INT` should still stop us.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        demo.close()
        app.close()
    print("bargainnet serve: stopped", file=sys.stderr)
    return EXIT_OK
