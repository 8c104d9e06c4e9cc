"""Orchestration per DICOMweb capability: store, retrieve (and more as they come)."""
