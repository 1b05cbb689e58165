"""GET /, /favicon.ico and /docs: the page (static files, no build step) and the API's documentation, Swagger UI
from the files the swagger-ui-bundle package ships, so it works offline too (FastAPI's default page fetches them
from a CDN). ``create_app`` mounts the files themselves, /static and /docs-assets.

The page is index.html with the facts it shares with the Python side written into it (``page_facts``), as JSON its
scripts read at start: the image formats and the languages, so the page keeps no list of its own.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse

from digitlab.languages import LANGUAGES
from digitlab.recognition.facts import IMAGE_FORMATS, SUFFIXES

STATIC = Path(__file__).parents[1] / "static"
DOCS_ASSETS = "/docs-assets"
FACTS = "{{ facts }}"  # where index.html takes them, inside <script id="facts" type="application/json">


def page_facts() -> dict[str, Any]:
    """What the page's scripts read from index.html: the formats an image may be in, by name (for messages) and
    as the file picker's ``accept``; the languages it offers, code -> name."""
    return {"formats": [image_format.name for image_format in IMAGE_FORMATS],
            "accept": ",".join([*(image_format.media_type for image_format in IMAGE_FORMATS), *SUFFIXES]),
            "languages": LANGUAGES}


@functools.cache
def page_html() -> str:
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    assert FACTS in html, "index.html has lost its place for the facts"
    # "<" escaped, so nothing in the JSON can end the script element
    return html.replace(FACTS, json.dumps(page_facts(), ensure_ascii=False).replace("<", "\\u003c"))


router = APIRouter(include_in_schema=False)


@router.get("/")
async def page():
    return HTMLResponse(page_html())


@router.get("/favicon.ico")
async def favicon():
    return FileResponse(STATIC / "favicon.ico", media_type="image/x-icon")


@router.get("/docs")
async def docs(request: Request):
    from fastapi.openapi.docs import get_swagger_ui_html

    return get_swagger_ui_html(openapi_url=request.app.openapi_url, title="digitlab API",
                               swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
                               swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css", swagger_favicon_url="/favicon.ico")
