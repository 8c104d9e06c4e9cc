"""Every behaviour that differs between the two profiles, in one place (``DICOM_COMPATIBILITY``).

``standard`` follows DICOM PS3.18; ``azure`` behaves as the Azure Health Data Services DICOM service
(v2) documents and does. ``docs/conformance.md`` has the same table for readers.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

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
    #: QIDO: only the documented searchable attributes (and extended query tags) of a level are
    #: accepted (azure); otherwise any DICOM attribute is (standard).
    qido_only_searchable_attributes: bool
    #: QIDO: an empty result is 204 No Content (azure) or 200 with [] (standard).
    qido_empty_is_no_content: bool
    #: QIDO: the largest ``limit``; above it 400 (strict) or lowered to it with a Warning header.
    qido_max_limit: int
    qido_strict_limit: bool
    #: QIDO: the Azure service's default and ``includefield=all`` attribute lists instead of PS3.18's.
    qido_azure_attribute_lists: bool


_PROFILES = {
    CompatibilityProfile.STANDARD: Behaviour(
        identical_restore_succeeds=True,
        empty_stow_is_no_content=False,
        metadata_bulk_data_uris=True,
        study_mismatch_failure_reason=0xA901,
        qido_only_searchable_attributes=False,
        qido_empty_is_no_content=False,
        qido_max_limit=1000,
        qido_strict_limit=False,
        qido_azure_attribute_lists=False,
    ),
    CompatibilityProfile.AZURE: Behaviour(
        identical_restore_succeeds=False,
        empty_stow_is_no_content=True,
        metadata_bulk_data_uris=False,
        study_mismatch_failure_reason=0xA900,
        qido_only_searchable_attributes=True,
        qido_empty_is_no_content=True,
        qido_max_limit=200,
        qido_strict_limit=True,
        qido_azure_attribute_lists=True,
    ),
}


def behaviour(profile: CompatibilityProfile) -> Behaviour:
    return _PROFILES[profile]


def search_behaviour(profile: CompatibilityProfile, qido_max_limit: int) -> Behaviour:
    """The profile's behaviour with the configured largest QIDO ``limit`` (``DICOM_QIDO_MAX_LIMIT``):
    the standard profile uses it; the azure profile keeps the Azure service's 200."""
    rules = _PROFILES[profile]
    if profile is CompatibilityProfile.STANDARD:
        return replace(rules, qido_max_limit=qido_max_limit)
    return rules
