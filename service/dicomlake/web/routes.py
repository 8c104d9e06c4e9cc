"""Every route of the service, in one table. DICOMweb routes exist twice: under ``/v2`` (the default
partition) and under ``/v2/partitions/{partition}``."""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from dicomlake.web import (
    changefeed,
    delete,
    extended_tags,
    frames,
    health,
    metrics,
    operations,
    partitions_api,
    qido,
    rebuild,
    rendered,
    stow,
    wado,
)

STUDY = "/studies/{study}"
SERIES = STUDY + "/series/{series}"
INSTANCE = SERIES + "/instances/{instance}"


def _dicomweb_routes(prefix: str) -> list[BaseRoute]:
    return [
        Route(prefix + "/studies", stow.store, methods=["POST", "PUT"]),
        Route(prefix + STUDY, stow.store, methods=["POST", "PUT"]),
        Route(prefix + STUDY, wado.retrieve, methods=["GET"]),
        Route(prefix + SERIES, wado.retrieve, methods=["GET"]),
        Route(prefix + INSTANCE, wado.retrieve, methods=["GET"]),
        Route(prefix + STUDY + "/metadata", wado.metadata, methods=["GET"]),
        Route(prefix + SERIES + "/metadata", wado.metadata, methods=["GET"]),
        Route(prefix + INSTANCE + "/metadata", wado.metadata, methods=["GET"]),
        Route(prefix + INSTANCE + "/bulkdata/{path:path}", wado.bulkdata, methods=["GET"]),
        Route(prefix + INSTANCE + "/frames/{frames}", frames.frames, methods=["GET"]),
        Route(prefix + INSTANCE + "/rendered", rendered.rendered, methods=["GET"]),
        Route(prefix + INSTANCE + "/frames/{frames}/rendered", rendered.rendered, methods=["GET"]),
        Route(prefix + STUDY + "/thumbnail", rendered.thumbnail, methods=["GET"]),
        Route(prefix + SERIES + "/thumbnail", rendered.thumbnail, methods=["GET"]),
        Route(prefix + INSTANCE + "/thumbnail", rendered.thumbnail, methods=["GET"]),
        Route(prefix + INSTANCE + "/frames/{frames}/thumbnail", rendered.thumbnail, methods=["GET"]),
        Route(prefix + "/studies", qido.search_studies, methods=["GET"]),
        Route(prefix + "/series", qido.search_series, methods=["GET"]),
        Route(prefix + "/instances", qido.search_instances, methods=["GET"]),
        Route(prefix + STUDY + "/series", qido.search_series, methods=["GET"]),
        Route(prefix + STUDY + "/instances", qido.search_instances, methods=["GET"]),
        Route(prefix + SERIES + "/instances", qido.search_instances, methods=["GET"]),
        Route(prefix + STUDY, delete.delete, methods=["DELETE"]),
        Route(prefix + SERIES, delete.delete, methods=["DELETE"]),
        Route(prefix + INSTANCE, delete.delete, methods=["DELETE"]),
        Route(prefix + "/changefeed", changefeed.changefeed, methods=["GET"]),
        Route(prefix + "/changefeed/latest", changefeed.latest, methods=["GET"]),
    ]


def build_routes() -> list[BaseRoute]:
    return [
        Route("/health/live", health.live, methods=["GET"]),
        Route("/health/ready", health.ready, methods=["GET"]),
        Route("/health/check", health.check, methods=["GET"]),
        Route("/metrics", metrics.metrics, methods=["GET"]),
        Route("/v2/partitions", partitions_api.partitions, methods=["GET"]),
        # extended query tags and operations: global, not under a partition
        Route("/v2/extendedquerytags", extended_tags.add_tags, methods=["POST"]),
        Route("/v2/extendedquerytags", extended_tags.list_tags, methods=["GET"]),
        Route("/v2/extendedquerytags/{tag}", extended_tags.get_tag, methods=["GET"]),
        Route("/v2/extendedquerytags/{tag}", extended_tags.update_tag, methods=["PATCH"]),
        Route("/v2/extendedquerytags/{tag}", extended_tags.delete_tag, methods=["DELETE"]),
        Route("/v2/extendedquerytags/{tag}/errors", extended_tags.tag_errors, methods=["GET"]),
        Route("/v2/operations/{id}", operations.get_operation, methods=["GET"]),
        Route("/v2/operations/rebuild-from-lake", rebuild.rebuild_from_lake, methods=["POST"]),
        *_dicomweb_routes("/v2"),
        *_dicomweb_routes("/v2/partitions/{partition}"),
    ]
