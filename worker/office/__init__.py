"""The office pool: supervised LibreOffice instances behind one convert() call."""

from worker.office.pool import ConversionTiming, InstanceStatus, OfficePool, RestartReason, State

__all__ = ["ConversionTiming", "InstanceStatus", "OfficePool", "RestartReason", "State"]
