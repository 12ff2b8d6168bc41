"""The office pool: supervised LibreOffice instances behind one convert() call."""

from worker.office.api import (
           STOCK_EXPORT,
           ConversionPool,
           ConversionTiming,
           Converter,
           Export,
           InstanceStatus,
           PoolView,
           RestartReason,
           State,
)
from worker.office.pool import OfficePool

__all__ = [
           "STOCK_EXPORT",
           "ConversionPool",
           "ConversionTiming",
           "Converter",
           "Export",
           "InstanceStatus",
           "OfficePool",
           "PoolView",
           "RestartReason",
           "State",
]
