"""Every behaviour that differs between the two profiles, in one place (``DICOM_COMPATIBILITY``).

``standard`` follows DICOM PS3.18; ``azure`` behaves as the Azure Health Data Services DICOM service
(v2) documents and does. ``docs/conformance.md`` has the same table for readers.
"""

from __future__ import annotations

from dataclasses import dataclass

from dicomlake.config import CompatibilityProfile


@dataclass(frozen=True, slots=True)
class Behaviour:
    #: Re-storing an existing SOP with identical bytes via POST succeeds (idempotent retry) or is 45070.
    identical_restore_succeeds: bool
    #: An empty multipart STOW body: 204 No Content (azure) or 400 (standard).
    empty_stow_is_no_content: bool
    #: Binary values in metadata: BulkDataURI (standard) or omitted (azure).
    metadata_bulk_data_uris: bool
    #: FailureReason for a StudyInstanceUID that differs from the path: 43265 (A901) or 43264 (A900).
    study_mismatch_failure_reason: int


_PROFILES = {
    CompatibilityProfile.STANDARD: Behaviour(
        identical_restore_succeeds=True,
        empty_stow_is_no_content=False,
        metadata_bulk_data_uris=True,
        study_mismatch_failure_reason=0xA901,
    ),
    CompatibilityProfile.AZURE: Behaviour(
        identical_restore_succeeds=False,
        empty_stow_is_no_content=True,
        metadata_bulk_data_uris=False,
        study_mismatch_failure_reason=0xA900,
    ),
}


def behaviour(profile: CompatibilityProfile) -> Behaviour:
    return _PROFILES[profile]
