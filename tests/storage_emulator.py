"""A local Google Cloud Storage emulator (gcp-storage-emulator, in memory, on 127.0.0.1) for the
suite: `gs://` workdirs are written and read by the same clients as on Google Cloud (tensorstore
for orbax's checkpoints, gcsfs under etils.epath for everything else).

`python -m tests.storage_emulator --port=P --bucket=B` serves it. The emulator's downloads lack
the `x-goog-generation` header that Cloud Storage sends; tensorstore reads an object's
generation from it for the conditional writes of orbax's OCDBT manifests ("Malformed
StorageGeneration" without it), so the server here adds it.
"""

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from http import HTTPStatus

BUCKET = 'test-bucket'


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def client_env(endpoint: str) -> dict[str, str]:
  """What points tensorstore and gcsfs at `endpoint` instead of storage.googleapis.com."""
  return {
      'TENSORSTORE_GCS_HTTP_URL': endpoint,
      'STORAGE_EMULATOR_HOST': endpoint,
      # Without these gcsfs 2026.x probes the bucket type over gRPC and the GCE metadata
      # server, and waits about 60 s per call for answers no emulator gives.
      'GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT': 'false',
      'NO_GCE_CHECK': 'true',
  }


@contextlib.contextmanager
def running(bucket: str = BUCKET) -> Iterator[dict[str, str]]:
  """Starts the emulator with `bucket`; yields the environment that points clients at it."""
  port = free_port()
  log = tempfile.TemporaryFile()  # not a pipe: the emulator logs every request, and a full pipe stalls it
  process = subprocess.Popen([sys.executable, '-m', 'tests.storage_emulator', f'--port={port}', f'--bucket={bucket}'],
                             cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                             stdout=log, stderr=subprocess.STDOUT)
  deadline = time.time() + 60
  while True:
    with contextlib.suppress(OSError), socket.create_connection(('127.0.0.1', port), timeout=1):
      break
    if process.poll() is not None or time.time() > deadline:
      process.kill()
      log.seek(0)
      raise RuntimeError(f'the storage emulator did not start: {log.read().decode()[-2000:]}')
    time.sleep(0.1)
  try:
    yield client_env(f'http://127.0.0.1:{port}')
  finally:
    process.terminate()
    process.wait(timeout=30)
    log.close()


def _serve(port: int, bucket: str) -> None:
  from gcp_storage_emulator import server  # pylint: disable=import-outside-toplevel
  from gcp_storage_emulator.handlers import objects  # pylint: disable=import-outside-toplevel

  download = objects.download

  def download_with_generation(request, response, storage, *args, **kwargs):
    download(request, response, storage, *args, **kwargs)
    if response.status in (HTTPStatus.OK, HTTPStatus.PARTIAL_CONTENT):
      stored = storage.get_file_obj(request.params['bucket_name'], request.params['object_id'])
      response['x-goog-generation'] = stored['generation']
      response['x-goog-metageneration'] = stored['metageneration']

  objects.download = download_with_generation  # what objects.get calls for ?alt=media
  for _, methods in server.HANDLERS:
    for method, handler in methods.items():
      if handler is download:
        methods[method] = download_with_generation
  server.create_server('127.0.0.1', port, in_memory=True, default_bucket=bucket).run()


if __name__ == '__main__':
  parser = argparse.ArgumentParser()
  parser.add_argument('--port', type=int, required=True)
  parser.add_argument('--bucket', default=BUCKET)
  flags = parser.parse_args()
  _serve(flags.port, flags.bucket)
