"""The DICOM domain: parse and validate Part 10 instances, without network, database or asyncio.

This package is pure and synchronous on purpose: STOW-RS runs it in a worker thread on the spooled
upload, WADO-RS uses its byte offsets to serve bulk data straight from storage, and both can be
tested with plain bytes. It is also the one place that lets hostile uploads near pydicom, so the
resource limits (``HeaderLimits``) live here.
"""
