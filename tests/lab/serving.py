"""What the lab's HTTP servers share: serving on a daemon thread, and their command line loop."""

import os
import signal
import tempfile
import threading


class LoopbackService:
    """Serve an HTTP server on a daemon thread; ``start()`` / ``stop()`` or ``with``.

    A subclass sets ``host`` and ``_port`` and makes its server in ``_new_server()``; it may
    act right after the start in ``_started()`` and on the closed server in ``_closed()``.
    """

    thread_name = 'lab-server'
    _server = None
    _thread = None

    def _new_server(self):
        raise NotImplementedError

    def _started(self):
        """Called once the server is bound, before it serves."""

    def _closed(self, server):
        """Called once ``server`` no longer accepts connections."""

    def start(self):
        if self._server is not None:
            raise RuntimeError('already started')
        self._server = self._new_server()
        self._port = self._server.server_address[1]
        self._started()
        # A short poll interval keeps stop() fast; the default 0.5 s adds up over many tests.
        self._thread = threading.Thread(target=self._server.serve_forever, name=self.thread_name,
                                        kwargs={'poll_interval': 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()  # the port now refuses new connections
        self._closed(server)
        self._thread.join(5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    @property
    def port(self):
        """The bound port (the requested one until ``start()`` picks a free one for 0)."""
        return self._port


def write_atomically(path, text):
    """Readers polling ``path`` see either no file or the whole text, never half of it."""
    fd, temp_path = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix='.tmp-')
    try:
        with os.fdopen(fd, 'w') as temp_file:
            temp_file.write(text)
        os.replace(temp_path, path)
    except BaseException:
        os.unlink(temp_path)
        raise


def serve_until_signalled(service, port_file, what):
    """The command line's life: start ``service``, write its port to ``port_file`` (if any),
    say where it listens, and serve until SIGTERM or SIGINT. Returns the exit status."""
    stop_requested = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop_requested.set())
    service.start()
    try:
        if port_file:
            write_atomically(port_file, '%d\n' % service.port)
        print('%s listening on %s' % (what, service.url), flush=True)
        while not stop_requested.wait(0.2):  # a timed wait lets the signal handler run promptly
            pass
    finally:
        service.stop()
    return 0
