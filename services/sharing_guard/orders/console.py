"""The legal officers' console: a static page the order service serves at ``/console/``.

The files of ``console/`` (``index.html``, ``console.js``, ``console.css``, ``favicon.svg``),
shipped in the wheel as package data and read once with :mod:`importlib.resources`, are
served without a token: they hold no data. Everything the page shows comes from the JSON
API, called with the officer's token.

Design:

* **Signing in.** The officer pastes the bearer token the administrator issued; the page
  checks it with ``GET /me`` (who, which role, what the role may do) and keeps it in
  ``sessionStorage`` only: this tab, forgotten on "Sign out" and when the tab closes;
  never in ``localStorage``, a cookie or a URL.
* **Every call carries the token** as ``Authorization: Bearer``, through ``fetch`` with
  ``credentials: "omit"``. The service sets no cookie at all, so a page of another site
  cannot make the browser act as the officer: a cross-site form can send neither an
  ``Authorization`` header nor ``Content-Type: application/json``, and a script of another
  origin that tries needs a CORS preflight, which the service never grants (no
  ``Access-Control-Allow-*`` header anywhere). CSRF is impossible by construction; the
  state-changing calls take JSON bodies only (a form-encoded body is a 422).
* **The page's own policy** (:data:`sharing_guard.edge.asgi.PAGE_CSP`, set by the edge for
  every path under ``/console/``): scripts, styles and API from this origin only, nothing
  inline, never framed, Trusted Types required. The script builds the DOM with
  ``createElement`` and ``textContent`` only.
* **No personal data in URLs.** Account ids travel in request bodies and responses only;
  paths name an order reference at most (``/orders/{ref}/approve``), which the service logs
  anyway. The page logs nothing to the browser console.
* **Four eyes, visible.** On an order the signed-in officer registered, "Approve" is
  disabled with the reason next to it; the server still refuses such an approval (409)
  and the page shows its message if it is sent anyway.

``/console`` (no slash) redirects to ``console/`` (a relative ``Location``: the ``Host`` header
is never echoed). The routes are left out of the OpenAPI description.
"""

from importlib.resources import files
from typing import Final

from fastapi import FastAPI
from fastapi.responses import Response
from starlette.exceptions import HTTPException

PREFIX: Final = "/console/"
ENTRY: Final = "/console"
"""The address without the slash: a redirect to :data:`PREFIX`, needing no token either."""
INDEX: Final = "index.html"
MEDIA_TYPES: Final = {
    "index.html": "text/html; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
"""The page's files and their media types; no other name under ``/console/`` exists."""


def console_files() -> dict[str, bytes]:
    """Each file of the page by name, read from the installed package."""
    folder = files("sharing_guard.orders").joinpath("console")
    return {name: folder.joinpath(name).read_bytes() for name in MEDIA_TYPES}


def add_console(app: FastAPI) -> None:
    """Serve the console's files under :data:`PREFIX` (the edge must list it in its
    ``pages`` and :data:`ENTRY` in its public paths)."""
    content = console_files()

    def send(name: str) -> Response:
        return Response(content[name], media_type=MEDIA_TYPES[name])

    @app.get(ENTRY, include_in_schema=False)
    def console_entry() -> Response:
        """To the page's folder, so that its relative links resolve."""
        return Response(status_code=308, headers={"Location": "console/"})

    @app.get(PREFIX, include_in_schema=False)
    def console_index() -> Response:
        """The page."""
        return send(INDEX)

    @app.get(PREFIX + "{name}", include_in_schema=False)
    def console_file(name: str) -> Response:
        """One of the page's files; any other name is a 404."""
        if name not in content:
            raise HTTPException(404, "no such file of the console")
        return send(name)
