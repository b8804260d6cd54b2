"""``serve``: the app on several cores — N app processes over one database behind nginx, in one command."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from core.serving import launcher
from core.store import db_file


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    serve = subparsers.add_parser(
        "serve", parents=[common],
        help="run the app: N app processes over the database behind nginx, with session affinity (Ctrl-C stops)",
    )
    serve.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                       help="app processes (default: one per core); more than 1 needs nginx (apt-get install nginx)")
    serve.add_argument("--port", type=int, default=8501, help="the port browsers connect to (default 8501)")
    serve.add_argument("--address", default="0.0.0.0", help="the address to listen on (default: every interface)")
    serve.add_argument("--max-upload-mb", type=int, default=launcher.DEFAULT_MAX_UPLOAD_MB,
                       help="largest upload in MB, for the app and the proxy alike (default 200)")
    serve.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace, db: Any) -> dict[str, Any]:
    path = db_file(db)  # the CLI opened (and migrated) it once, before any app process starts
    serving = launcher.start(path, workers=args.workers, port=args.port, address=args.address,
                             max_upload_mb=args.max_upload_mb)
    proxy = "behind nginx" if serving.nginx else "without a proxy"
    print(f"Synthloop serves {path} on {serving.url}: {len(serving.apps)} app process(es) {proxy}"
          f" (pids {', '.join(map(str, serving.pids()))}; logs in {serving.run_dir}). Ctrl-C stops.",
          file=sys.stderr, flush=True)
    launcher.supervise(serving)
    return {"url": serving.url, "workers": len(serving.apps), "restarts": sum(a.restarts for a in serving.apps),
            "message": "stopped"}
