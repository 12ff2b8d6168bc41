#!/usr/bin/python3
"""One warm office: soffice.bin plus an XML-RPC front; unoserver's converter connects to it.

Run by path with Debian's /usr/bin/python3 (the only Python that can `import uno`), never imported by the worker.
Why not stock `unoserver`: it sleeps 5 s before serving, loads documents without Hidden=True (which makes
LibreOffice 7.4 abort on spreadsheets), and exits with status 0 on every failure. This launcher starts
soffice.bin directly (no shell script, no oosplash), polls the UNO socket every 50 ms, loads hidden with macros
off, and exits non-zero as soon as the office dies, so the supervisor always sees why it went away.

It also dies with the worker: the group has its own session (so the supervisor can kill it whole), which means a
SIGKILLed worker would leave it and soffice.bin behind as orphans. The launcher holds the read end of a pipe only
the worker can write to (--lifeline-fd) and stops the office when it reads EOF, i.e. when the worker is gone;
soffice.bin gets PR_SET_PDEATHSIG=SIGKILL, so it cannot outlive the launcher either. (Not a parent-pid poll: inside
the worker's sandbox the worker's pid is not visible. Not bwrap --die-with-parent: PR_SET_PDEATHSIG fires when the
worker *thread* that started the sandbox ends, and the pool starts offices from short-lived threads.)

The worker reaches it over a UNIX socket in its working directory, never TCP: in the sandbox the office has a
network namespace of its own (UNO still uses TCP, on that namespace's loopback). With --run-as it drops to an
unprivileged user before it starts anything, so the office owns none of the worker's files.
"""

import argparse
import ctypes
import os
import pathlib
import signal
import socketserver
import subprocess
import sys
import threading
import time

# Exit codes the supervisor reads.
EXIT_OFFICE_DIED = 3
EXIT_START_FAILED = 4
EXIT_PARENT_GONE = 5
EXIT_OFFICE_KILLED = 6  # soffice.bin got a SIGKILL nobody in the worker sent: OOM killer, operator, chaos test
# soffice.bin asks its parent to restart it (first start on a new profile); oosplash normally does this.
SOFFICE_RESTART_CODE = 81


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--rpc-socket", required=True, help="XML-RPC UNIX socket path (relative: the working dir)")
    p.add_argument("--uno-port", type=int, required=True)
    p.add_argument("--profile", required=True, help="LibreOffice user installation directory")
    p.add_argument("--soffice", default="/usr/lib/libreoffice/program/soffice.bin")
    p.add_argument("--unoserver-path", default="", help="directory holding the unoserver package")
    p.add_argument("--start-timeout", type=float, default=60.0)
    p.add_argument("--init-only", action="store_true", help="initialise the profile, then exit 0")
    p.add_argument("--lifeline-fd", type=int, default=-1, help="stop the office and exit on EOF from this pipe")
    p.add_argument("--run-as", default="", help="UID:GID to drop to before starting anything")
    return p.parse_args()


PR_SET_NO_NEW_PRIVS = 38


def drop_privileges(run_as):
    """Become the office user for good: no supplementary groups, no way back, no setuid gains afterwards."""
    uid, gid = (int(part) for part in run_as.split(":"))
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    if os.getuid() != uid or os.geteuid() != uid:
        sys.exit(EXIT_START_FAILED)
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)


def start_soffice(args):
    cmd = [
        args.soffice,
        "--headless", "--invisible", "--nocrashreport", "--nodefault", "--nologo",
        "--nofirststartwizard", "--norestore", "--nolockcheck",
        # a URL, not a path: a space or a # in WORK_DIR must be percent-encoded or the office never starts
        "-env:UserInstallation=" + pathlib.Path(os.path.abspath(args.profile)).as_uri(),
        f"--accept=socket,host=127.0.0.1,port={args.uno_port},tcpNoDelay=1;urp;StarOffice.ComponentContext",
    ]
    office = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
    OFFICE[0] = office
    return office


PR_SET_PDEATHSIG = 1
OFFICE = [None]  # the current soffice.bin Popen, for the worker watch


def _die_with_parent():
    """In the soffice.bin child before exec: SIGKILL when the launcher's main thread (which starts it) dies."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except Exception:
        pass


def watch_worker(lifeline_fd):
    """The worker was killed (SIGKILL leaves no chance to stop us): its end of the pipe closed, so stop the office."""
    while True:
        try:
            data = os.read(lifeline_fd, 1)
        except InterruptedError:
            continue
        if not data:
            STOPPING.set()
            office = OFFICE[0]
            if office is not None:
                office.kill()
                office.wait()
            print("launcher: the worker went away; office stopped", file=sys.stderr, flush=True)
            os._exit(EXIT_PARENT_GONE)


def connect(args, office):
    """Poll the UNO socket until the office answers; restart it once if it asks (exit 81)."""
    from unoserver.converter import UnoConverter

    deadline = time.monotonic() + args.start_timeout
    restarted = False
    while time.monotonic() < deadline:
        rc = office.poll()
        if rc is not None:
            if rc == SOFFICE_RESTART_CODE and not restarted:
                restarted = True
                office = start_soffice(args)
                continue
            print(f"launcher: soffice.bin exited with {rc} during start", file=sys.stderr, flush=True)
            sys.exit(EXIT_START_FAILED)
        try:
            return office, UnoConverter("127.0.0.1", str(args.uno_port))
        except Exception:  # NoConnectException until the socket is up
            time.sleep(0.02)
    print("launcher: office did not answer in time", file=sys.stderr, flush=True)
    office.kill()
    sys.exit(EXIT_START_FAILED)


# The PDF export filter of each kind of document LibreOffice can load, in the order a document is matched.
PDF_EXPORT = (
    ("com.sun.star.text.WebDocument", "writer_web_pdf_Export"),
    ("com.sun.star.text.GlobalDocument", "writer_globaldocument_pdf_Export"),
    ("com.sun.star.text.TextDocument", "writer_pdf_Export"),
    ("com.sun.star.sheet.SpreadsheetDocument", "calc_pdf_Export"),
    ("com.sun.star.presentation.PresentationDocument", "impress_pdf_Export"),
    ("com.sun.star.drawing.DrawingDocument", "draw_pdf_Export"),
    ("com.sun.star.formula.FormulaProperties", "math_pdf_Export"),
)


class LoadFailed(RuntimeError):
    """loadComponentFromURL refused the document; with a password given, the worker reads it as a wrong password."""


def convert_to_pdf(desktop, inpath, outpath, infilter, update_index, filter_data=None, password=""):
    """Load hidden, read-only, macro-free, links never updated, with the import filter sniffing chose; export PDF.

    Not unoserver's convert: per call it re-checks the output path, looks the export type and filter up again
    and picks a frame by name, ~2 ms of a ~35 ms one-page conversion, all of it already decided here. Hidden=True
    matters beyond speed: without it LibreOffice 7.4 aborts on spreadsheets. `filter_data` (name -> bool/int/str)
    becomes the export's FilterData when given (the worker always sends a complete set); `password` the load's
    Password property (a wrong one and none fail alike: "type detection aborted").
    """
    from com.sun.star.beans import PropertyValue

    import uno

    props = [PropertyValue(Name="Hidden", Value=True), PropertyValue(Name="ReadOnly", Value=True),
             PropertyValue(Name="MacroExecutionMode", Value=0), PropertyValue(Name="UpdateDocMode", Value=0)]
    if infilter:
        props.append(PropertyValue(Name="FilterName", Value=infilter))
    if password:
        props.append(PropertyValue(Name="Password", Value=password))
    try:
        doc = desktop.loadComponentFromURL(uno.systemPathToFileUrl(os.path.abspath(inpath)), "_blank", 0,
                                           tuple(props))
    except Exception as exc:
        if password:
            raise LoadFailed(f"LibreOffice could not open the document with the password given ({exc})") from None
        raise
    if doc is None:
        if password:
            raise LoadFailed("LibreOffice could not open the document with the password given")
        raise RuntimeError(f"Could not load document {inpath} using the {infilter or 'default'} filter.")
    try:
        if update_index and hasattr(doc, "getDocumentIndexes"):
            for _ in range(2):  # the first pass grows the tables of contents, the second fixes their page numbers
                doc.refresh()
                indexes = doc.getDocumentIndexes()
                for i in range(indexes.getCount()):
                    indexes.getByIndex(i).update()
        services = set(doc.getSupportedServiceNames())
        export = next((f for service, f in PDF_EXPORT if service in services), None)
        if export is None:
            raise RuntimeError(f"LibreOffice loaded an unknown kind of document ({sorted(services)[:3]})")
        store = [PropertyValue(Name="FilterName", Value=export), PropertyValue(Name="Overwrite", Value=True)]
        if filter_data:
            data = tuple(PropertyValue(Name=k, Value=v) for k, v in sorted(filter_data.items()))
            store.append(PropertyValue(Name="FilterData", Value=uno.Any("[]com.sun.star.beans.PropertyValue", data)))
        doc.storeToURL(uno.systemPathToFileUrl(os.path.abspath(outpath)), tuple(store))
    finally:
        doc.close(True)


def record_product_version(converter):
    """Mark this profile as having run this LibreOffice version, so it stops self-testing its graphics at start.

    LibreOffice runs ~100 "GraphicsRenderTests" (about 0.8 s of CPU) on every start where the profile's
    ooSetupLastVersion is older than the office; only the GUI's "what's new" bar ever records the version, so a
    headless office pays it on every single start. Written once into the template at init and flushed at once
    (the configuration otherwise writes its file lazily, and we stop with SIGTERM).
    """
    from com.sun.star.beans import PropertyValue

    provider = converter.service.createInstanceWithContext(
        "com.sun.star.configuration.ConfigurationProvider", converter.context)
    node = PropertyValue(Name="nodepath", Value="/org.openoffice.Setup/Product")
    product = provider.createInstanceWithArguments("com.sun.star.configuration.ConfigurationUpdateAccess", (node,))
    product.setPropertyValue("ooSetupLastVersion", product.getPropertyValue("ooSetupVersion"))
    product.commitChanges()
    provider.flush()


STOPPING = threading.Event()


def watch(office):
    """The office died under us: leave at once with a non-zero status so the supervisor restarts us."""
    office.wait()
    if STOPPING.is_set():
        return
    print(f"launcher: soffice.bin exited with {office.returncode}", file=sys.stderr, flush=True)
    os._exit(EXIT_OFFICE_KILLED if office.returncode == -signal.SIGKILL else EXIT_OFFICE_DIED)


class UnixXMLRPCServer(socketserver.UnixStreamServer):
    """SimpleXMLRPCServer's dispatching over a UNIX socket (built in main, after the slow xmlrpc import)."""


def main():
    args = parse_args()
    if args.run_as:
        drop_privileges(args.run_as)
    if args.unoserver_path:
        sys.path.append(args.unoserver_path)
    if args.lifeline_fd >= 0:
        threading.Thread(target=watch_worker, args=(args.lifeline_fd,), daemon=True).start()
    office = start_soffice(args)
    # imported while soffice.bin starts, not before: it pulls in pydoc (~40 ms of a 1 s start)
    from xmlrpc.server import SimpleXMLRPCDispatcher, SimpleXMLRPCRequestHandler

    office, converter = connect(args, office)

    def stop(signum, frame):
        STOPPING.set()
        office.terminate()
        try:
            office.wait(3)
        except subprocess.TimeoutExpired:
            office.kill()
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if args.init_only:
        try:
            record_product_version(converter)
        except Exception as exc:  # a slower start is no reason to refuse the profile; the worker's test notices
            print(f"launcher: could not record the office version in the profile: {exc}", file=sys.stderr, flush=True)
        stop(None, None)

    def ping():
        return {"version": converter.uno_info(), "office_pid": office.pid}

    def convert(inpath, outpath, infilter, update_index, filter_data=None, password=""):
        convert_to_pdf(converter.desktop, inpath, outpath, infilter, bool(update_index), filter_data, password)
        return True

    # HTTP/1.1: the supervisor keeps one connection per instance open instead of a TCP handshake per call
    # (it is the only client, so this single-threaded server serving that connection blocks nobody).
    SimpleXMLRPCRequestHandler.protocol_version = "HTTP/1.1"

    class Handler(SimpleXMLRPCRequestHandler):
        disable_nagle_algorithm = False  # TCP_NODELAY: not a TCP socket

        def address_string(self):  # a UNIX socket peer has no address; error logs would fail on ''
            return "worker"

    class Server(UnixXMLRPCServer, SimpleXMLRPCDispatcher):
        def __init__(self, path):
            self.logRequests = False
            SimpleXMLRPCDispatcher.__init__(self, allow_none=True, encoding=None)
            UnixXMLRPCServer.__init__(self, path, Handler)

    try:
        os.unlink(args.rpc_socket)
    except FileNotFoundError:
        pass
    server = Server(args.rpc_socket)
    server.register_function(ping)
    server.register_function(convert)
    threading.Thread(target=watch, args=(office,), daemon=True).start()
    print(f"launcher: ready on {args.rpc_socket} (office pid {office.pid} in its sandbox)", file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
