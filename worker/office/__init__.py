"""The office pool: supervised LibreOffice instances behind one convert() call."""

from worker.office.api import (
           ConversionPool,
           ConversionTiming,
           Converter,
           InstanceStatus,
           PoolView,
           RestartReason,
           State,
)
from worker.office.pool import OfficePool

__all__ = ["ConversionPool", "ConversionTiming", "Converter", "InstanceStatus", "OfficePool", "PoolView",
           "RestartReason", "State"]
