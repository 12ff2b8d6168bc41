"""docworker: Office documents in GCS -> PDF on a warm, supervised LibreOffice pool."""

__version__ = "0.1.0"
