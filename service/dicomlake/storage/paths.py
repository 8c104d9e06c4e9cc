"""The data contract: the one place that builds every path the service writes in the lake.

Everything lives under ``AHDS/{workspace}/dicom/{service}/`` in the configured container::

    AHDS/{workspace}/dicom/{service}/healthCheck/...              lake health probe files
    AHDS/{workspace}/dicom/{service}/{partition}/{study}/{series}/{sop}...   instances

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
