"""The data contract: the one place that builds every path the service writes in the lake.

Everything lives under ``AHDS/{workspace}/dicom/{service}/`` in the configured container::

    AHDS/{workspace}/dicom/{service}/healthCheck/...              lake health probe files
    AHDS/{workspace}/dicom/{service}/{partition}/{study}/{series}/{sop}...   instances
    AHDS/{workspace}/dicom/{service}/{partition}/{study}/{series}/{sop}_{version}.thumbnail.jpg   thumbnails

See ``docs/data-contract.md``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LakeLayout:
    workspace: str
    service: str

    @property
    def service_root(self) -> str:
        return f"AHDS/{self.workspace}/dicom/{self.service}/"

    @property
    def health_check_prefix(self) -> str:
        return f"{self.service_root}healthCheck/"

    def partition_root(self, partition: str) -> str:
        return f"{self.service_root}{partition}/"

    def instance_blob(self, partition: str, study_uid: str, series_uid: str, sop_uid: str, watermark: int) -> str:
        """``{partition}/{study}/{series}/{sop}_{watermark}.dcm``: findable from the three UIDs in any
        storage browser; the watermark (version) keeps a replaced instance from overwriting the file that
        readers of the previous version may be streaming."""
        return f"{self.partition_root(partition)}{study_uid}/{series_uid}/{sop_uid}_{watermark}.dcm"

    @staticmethod
    def thumbnail_blob(instance_blob: str) -> str:
        """``{partition}/{study}/{series}/{sop}_{watermark}.thumbnail.jpg``, next to the instance file it
        was rendered from: a cache (WADO-RS thumbnail), safe to delete at any time, and to be deleted
        with its instance version."""
        return instance_blob.removesuffix(".dcm") + ".thumbnail.jpg"
