"""dicomlake: a DICOMweb server whose files live in the customer's Azure Data Lake Storage Gen2 account."""

__version__ = "0.1.0"
