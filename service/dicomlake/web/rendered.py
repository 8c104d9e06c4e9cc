"""WADO-RS rendered resources and thumbnails (PS3.18 §10.4.1.1.3 and §10.4.1.1.4).

``.../instances/{i}/rendered``, ``.../frames/{n}/rendered``; ``/thumbnail`` at study, series, instance
and frame level. ``image/jpeg`` (default) or ``image/png``; query ``quality``, ``viewport``, ``window``.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from dicomlake.dicom.render import JPEG, PNG, RenderOptions, parse_render_options
from dicomlake.errors import BadRequestError, NotAcceptableError
from dicomlake.features.render import cached_thumbnail, render, representative
from dicomlake.web.deps import deps
from dicomlake.web.lookup import find_instance, find_instances
from dicomlake.web.media import parse_accept


def _options(request: Request) -> RenderOptions:
    media_type: str | None = None
    for media in parse_accept(request.headers.get("accept")):
        if media.type in ("*/*", "image/*", JPEG):
            media_type = JPEG
        elif media.type == PNG:
            media_type = PNG
        if media_type is not None:
            break
    if media_type is None:
        raise NotAcceptableError("Rendered images are image/jpeg or image/png.")
    try:
        return parse_render_options(request.query_params, media_type)
    except ValueError as e:
        raise BadRequestError(f"Invalid rendering parameter: {e.args[0]}.", code="InvalidRenderParameter") from e


def _image(body: bytes, options: RenderOptions) -> Response:
    return Response(body, media_type=options.media_type, headers={"Cache-Control": "private, max-age=3600"})


async def rendered(request: Request) -> Response:
    d = deps(request)
    options = _options(request)
    instance = await find_instance(request)
    frame = request.path_params.get("frames")
    return _image(await render(d.pool, d.blobs, instance, options, frame=frame), options)


async def thumbnail(request: Request) -> Response:
    d = deps(request)
    options = _options(request)
    if "instance" in request.path_params:
        instance = await find_instance(request)
    else:
        instance = representative(await find_instances(request))
    frame = request.path_params.get("frames")
    if frame is not None:
        body = await render(d.pool, d.blobs, instance, options, frame=frame, thumbnail=True)
    else:
        body = await cached_thumbnail(d.pool, d.blobs, instance, options)
    return _image(body, options)
