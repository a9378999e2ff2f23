"""Run one demo app: `python -m examples.demo_rp`, set up by environment variables.

DEMO_ISSUER (http://127.0.0.1:5000), DEMO_CLIENT_ID (modeler), DEMO_CLIENT_SECRET
(dev-secret-<client_id>, the development secret of clients.yaml), DEMO_NAME (the
client_id), DEMO_DESCRIPTION (none: a line under the name), DEMO_PORT (5001),
DEMO_URL (http://127.0.0.1:<port>: must match the redirect URI registered in
clients.yaml), DEMO_SECRET_KEY (random: sessions end on restart).

`make demo` runs one for every app of clients.yaml instead: examples/launcher.py.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from . import create_app


def config_from_env() -> dict[str, Any]:
    """The demo app's settings from DEMO_* environment variables."""
    client_id = os.environ.get("DEMO_CLIENT_ID", "modeler")
    port = int(os.environ.get("DEMO_PORT", "5001"))
    return {
        "ISSUER": os.environ.get("DEMO_ISSUER", "http://127.0.0.1:5000"),
        "CLIENT_ID": client_id,
        "CLIENT_SECRET": os.environ.get("DEMO_CLIENT_SECRET", f"dev-secret-{client_id}"),
        "NAME": os.environ.get("DEMO_NAME", client_id),
        "DESCRIPTION": os.environ.get("DEMO_DESCRIPTION", ""),
        "PORT": port,
        "BASE_URL": os.environ.get("DEMO_URL", f"http://127.0.0.1:{port}"),
        "SECRET_KEY": os.environ.get("DEMO_SECRET_KEY"),
    }


if __name__ == "__main__":
    config = config_from_env()
    # Every line in the terminal says which app wrote it (make demo runs several).
    logging.basicConfig(level=logging.INFO, format=f"[{config['NAME']}] %(message)s")
    create_app(config).run(host="127.0.0.1", port=config["PORT"])
