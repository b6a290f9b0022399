"""pyiceberg's FileIO for the lake: Iceberg files written and read like every other lake object."""

from __future__ import annotations

from typing import Any

import pyarrow.fs as pafs
from pyiceberg.io.pyarrow import PyArrowFileIO
from pyiceberg.typedef import EMPTY_DICT, Properties

from connectors.lake.s3_storage import S3Access, lookup_access

# Catalog property naming the open `S3Access` whose filesystem `LakeFileIO` uses; pyiceberg builds
# a FileIO from string properties only (`py-io-impl`), so the lake registers its access by id.
ACCESS_PROPERTY = "lakehouse.s3-access"
FILE_IO_IMPL = f"{__name__}.LakeFileIO"


def file_io_properties(access: S3Access) -> dict[str, str]:
    """Catalog properties that make pyiceberg use `LakeFileIO` over `access`."""
    return {"py-io-impl": FILE_IO_IMPL, ACCESS_PROPERTY: access.id}


class LakeFileIO(PyArrowFileIO):
    """pyiceberg's PyArrow FileIO, reaching the lake's bucket through the lake's own filesystem.

    So Iceberg data, manifests and metadata are written like every other lake object (SSE-KMS
    headers, the lake's credentials and region), instead of through pyiceberg's own S3 settings:
    its PyArrow FileIO has no SSE option (pyiceberg 0.12 reads `s3.sse-kms-key-id` only in the
    fsspec FileIO, which needs s3fs and its pinned aiobotocore).
    """

    def __init__(self, properties: Properties = EMPTY_DICT) -> None:
        super().__init__(properties)
        self._access = _lookup_access(properties)

    def _initialize_fs(self, scheme: str, netloc: str | None = None) -> pafs.FileSystem:
        if scheme in {"s3", "s3a", "s3n"} and netloc == self._access.bucket:
            return self._access.filesystem
        return super()._initialize_fs(scheme, netloc)

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.pop("_access", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._access = _lookup_access(self.properties)


def _lookup_access(properties: Properties) -> S3Access:
    return lookup_access(properties.get(ACCESS_PROPERTY, ""))
