#!/usr/bin/python3
"""Design (b) prototype: ask LibreOffice's own TypeDetection (deep) what each file is, and time the question.

Run with Debian's /usr/bin/python3 (the one with `import uno`); bench/formats_compare.py drives it. It starts its
own soffice.bin on a throwaway profile and a free port, reads file paths from stdin, and prints one TSV line per
file: path, detected type, that type's preferred import filter, milliseconds of queryTypeByDescriptor.
The office is asked with the URL only (what the launcher would have); no load happens here.
"""

import os
import subprocess
import sys
import tempfile
import time

from measure import free_port

import uno

SOFFICE = "/usr/lib/libreoffice/program/soffice.bin"
RESTART_CODE = 81  # first start on a new profile asks to be restarted


def start(profile, port):
    cmd = [SOFFICE, "--headless", "--invisible", "--norestore", "--nologo", "--nodefault", "--nolockcheck",
           "-env:UserInstallation=file://" + profile, f"--accept=socket,host=127.0.0.1,port={port};urp;"]
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def connect(profile, port):
    office = start(profile, port)
    local = uno.getComponentContext()
    resolver = local.ServiceManager.createInstanceWithContext("com.sun.star.bridge.UnoUrlResolver", local)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if office.poll() == RESTART_CODE:
            office = start(profile, port)
        try:
            ctx = resolver.resolve(f"uno:socket,host=127.0.0.1,port={port};urp;StarOffice.ComponentContext")
            return office, ctx
        except Exception:
            time.sleep(0.1)
    office.kill()
    sys.exit("office did not answer")


def main():
    paths = [line.rstrip("\n") for line in sys.stdin if line.strip()]
    with tempfile.TemporaryDirectory(prefix="typedetect-") as profile:
        office, ctx = connect(profile, free_port())
        try:
            detection = ctx.ServiceManager.createInstanceWithContext("com.sun.star.document.TypeDetection", ctx)
            for path in paths:
                url = uno.createUnoStruct("com.sun.star.beans.PropertyValue")
                url.Name, url.Value = "URL", uno.systemPathToFileUrl(os.path.abspath(path))
                started = time.perf_counter()
                try:
                    type_name, answer = detection.queryTypeByDescriptor((url,), True)
                    # Deep detection may name the filter itself; otherwise the type's preferred one applies.
                    filter_name = {p.Name: p.Value for p in answer}.get("FilterName", "")
                    if not filter_name and type_name:
                        preferred = {p.Name: p.Value for p in detection.getByName(type_name)}
                        filter_name = preferred.get("PreferredFilter", "")
                except Exception as exc:  # a file the detection itself chokes on
                    type_name, filter_name = "", f"error: {str(exc).splitlines()[0][:80]}"
                ms = (time.perf_counter() - started) * 1000
                print(f"{path}\t{type_name}\t{filter_name}\t{ms:.2f}", flush=True)
        finally:
            office.terminate()
            office.wait(30)


if __name__ == "__main__":
    main()
