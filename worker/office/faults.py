"""The caller's error for a conversion that failed: a reason from the closed set, and why in a line."""

from __future__ import annotations

import xmlrpc.client

from worker.config import OfficeSettings
from worker.errors import Reason, WorkerError
from worker.office.policy import Result


def conversion_error(result: Result, cause: Exception, settings: OfficeSettings) -> WorkerError:
    """What convert() raises for each way a conversion can fail (the pool raises it `from` cause)."""
    if result is Result.TIMEOUT:
        return WorkerError(Reason.CONVERSION_TIMEOUT,
                           f"conversion did not finish within {settings.conversion_timeout_s:g} s")
    if result is Result.FAULT and isinstance(cause, xmlrpc.client.Fault):
        if "LoadFailed'>" in str(cause.faultString):  # uno/launcher.py: the load failed with a password given
            return WorkerError(Reason.PASSWORD_WRONG, "the password named by docworker-password-secret does not "
                               "open the document; check the secret's value")
        return WorkerError(Reason.CONVERSION_FAILED, fault_message(cause))
    if result is Result.MEMORY_KILLED:
        return WorkerError(Reason.MEMORY_EXHAUSTED, "the document made the office grow past "
                           f"{settings.effective_rss_kill_mb} MiB while converting")
    if result is Result.KILLED:
        return WorkerError(Reason.OFFICE_KILLED, "the office was SIGKILLed from outside the worker during the "
                           "conversion (the kernel's OOM killer or an operator)")
    return WorkerError(Reason.OFFICE_CRASHED, f"the office crashed during the conversion ({cause})")


def fault_message(fault: xmlrpc.client.Fault) -> str:
    """LibreOffice's faults arrive as "<class 'X'>:text"; keep the text, drop pyuno's noise."""
    text = str(fault.faultString)
    if ">:" in text:
        text = text.split(">:", 1)[1]
    text = text.strip() or "LibreOffice could not convert the document"
    if "Could not load document" in text:
        return ("LibreOffice could not load the document (damaged, or a variant of its format it cannot read);"
                " save it again from the application that made it and upload again")
    return text.splitlines()[0][:300]
