"""A local S3 server (moto) for the Ray export's tests and benchmark: offline, fake credentials.

pyarrow's S3 filesystem (what ``roiscope export s3://...`` lists and reads through) takes the
endpoint and credentials from the ``AWS_*`` variables, so they are set while the server runs and
restored after."""
from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass


@dataclass
class LocalS3:
    endpoint: str  # http://127.0.0.1:PORT

    def filesystem(self, **options):
        """A pyarrow S3 filesystem on this server (``options``: e.g. ``allow_bucket_deletion``)."""
        from pyarrow import fs as pafs

        return pafs.S3FileSystem(endpoint_override=self.endpoint, allow_bucket_creation=True, **options)


@contextlib.contextmanager
def local_s3(credential: str = "testing"):
    """Run a moto S3 server on a free localhost port; yields a ``LocalS3``. Raises ImportError
    without ``moto[server]`` (the dev extra has it)."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # not a line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": credential, "AWS_SECRET_ACCESS_KEY": credential,
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        yield LocalS3(endpoint)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        server.stop()
