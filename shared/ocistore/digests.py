"""Content digests: parsing, hashing, and the algorithms ocistore serves end to end."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Protocol

from .errors import ErrorCode, RegistryError

# Hex lengths per algorithm; a digest of any other algorithm is refused as invalid.
ALGORITHMS: dict[str, int] = {"sha256": 64, "sha512": 128}
# Matched whole (fullmatch): `$` would accept "sha256:<hex>\n" and drop the newline.
_DIGEST_RE = re.compile(r"([a-z0-9]+(?:[+._-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)")


class Hasher(Protocol):
    def update(self, data: bytes, /) -> None: ...
    def hexdigest(self) -> str: ...
    def copy(self) -> Hasher: ...


@dataclass(frozen=True, slots=True)
class Digest:
    algorithm: str
    encoded: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.encoded}"

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Parse and validate; anything malformed is the client's DIGEST_INVALID, never a 500."""
        m = _DIGEST_RE.fullmatch(text)
        if not m:
            raise RegistryError(ErrorCode.DIGEST_INVALID, f"malformed digest {text!r}",
                                message="invalid digest")
        alg, enc = m.group(1), m.group(2)
        size = ALGORITHMS.get(alg)
        if size is None:
            raise RegistryError(ErrorCode.DIGEST_INVALID, f"unsupported digest algorithm {alg!r}",
                                message="invalid digest")
        if len(enc) != size or not all(c in "0123456789abcdef" for c in enc):
            raise RegistryError(ErrorCode.DIGEST_INVALID,
                                f"{alg} digest must be {size} lowercase hex characters",
                                message="invalid digest")
        return cls(alg, enc)

    def hasher(self) -> Hasher:
        return new_hasher(self.algorithm)


def new_hasher(algorithm: str = "sha256") -> Hasher:
    return hashlib.new(algorithm)


def digest_of(data: bytes, algorithm: str = "sha256") -> Digest:
    return Digest(algorithm, hashlib.new(algorithm, data).hexdigest())
