"""Named public datasets: where to download them, how to check them, where they are cached.

``download("tinyshakespeare")`` returns the path of the cached file, downloading it first when
needed. The download streams into a ``.part`` file next to the destination, hashing as it goes;
only a complete file whose SHA-256 matches the registry is renamed onto the final name, so a
crash, a truncated transfer or a tampered mirror never leaves a file that looks valid. A cached file
whose hash matches is reused without any network access.

Upstream URLs name a fixed commit where the host allows it, so a pinned hash cannot go stale.
Every entry pins its SHA-256 and size. An entry without a hash (``sha256=None``) could only be
checked for completeness (its size matches the ``Content-Length``), not for content, so
``download`` refuses it unless ``allow_unverified=True`` (``--allow-unverified``); ``gptlab data
list`` shows which entries are verified.

Where files go: ``--dir DIR`` if given, else ``$GPTLAB_CACHE/datasets`` when ``GPTLAB_CACHE`` is
set, else ``~/.cache/gptlab/datasets``. Where they come from: ``--url URL`` for one download, else
the data mirror ``$GPTLAB_DATA_MIRROR`` when set, else the upstream URL. The hash and size are
checked whatever the source.

``GPTLAB_DATA_MIRROR`` is one of two things, told apart by one rule: a value containing ``://`` is
a base URL (``<mirror>/<filename>`` is downloaded, under the URL rules below); anything else is the
path of a local folder (``~`` expanded), which must exist, and ``<folder>/<filename>`` is copied
into the cache exactly like a download: through a ``.part`` file, hashed, size-checked, renamed
only when it matches. (``file://`` stays a refused URL scheme; name the folder itself.)

Most entries are upstream files that a mirror holds byte for byte. An entry with a ``mirror_name``
is a file only data mirrors hold, derived from its ``url`` (a subset, or reformatted); it is
stored in the mirror under ``mirror_name`` and cached under its own ``filename``, and without a
mirror (or ``--url``) there is nothing to download it from.

Only ``https://`` URLs are accepted, plus ``http://`` to this machine (a local mirror on
127.0.0.1 / ::1 / localhost: the bytes never cross a network). Anything else (``http://`` to
another host, ``file://``, ``ftp://``, a redirect to one of those) is refused before any
connection unless ``allow_insecure_url=True`` (``--allow-insecure-url``) or
``$GPTLAB_ALLOW_INSECURE_URLS=1``.

Threat model: the network and the mirror are untrusted. A known hash makes a substituted file an
error, and a pinned size stops a source that sends more bytes than expected; the downloaded bytes
are only written to disk, never parsed or executed here. Requiring HTTPS is defence in depth: a
hash mismatch is still an error, but it is better not to fetch from a source anyone on the path
can rewrite, and a ``file://`` URL would copy an arbitrary local file into the cache.
"""

from __future__ import annotations

import hashlib
import http.client
import ipaddress
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from gptlab.errors import GptlabError

CACHE_ENV = "GPTLAB_CACHE"
MIRROR_ENV = "GPTLAB_DATA_MIRROR"
INSECURE_ENV = "GPTLAB_ALLOW_INSECURE_URLS"
DEFAULT_CACHE_ROOT = Path("~/.cache/gptlab")
CHUNK_BYTES = 1 << 20  # read and hash the download 1 MiB at a time
TIMEOUT_S = 30.0  # per socket operation, not for the whole download


@dataclass(frozen=True)
class DatasetEntry:
    """One downloadable file. ``sha256`` / ``size`` are None where they could not be pinned."""

    name: str
    url: str
    filename: str
    description: str
    license: str
    sha256: str | None = None
    size: int | None = None
    # set for a file only data mirrors hold (derived from ``url``): its name in the mirror
    mirror_name: str | None = None

    @property
    def verified(self) -> bool:
        return self.sha256 is not None

    @property
    def name_in_mirror(self) -> str:
        return self.mirror_name or self.filename

    def to_dict(self) -> dict:
        return asdict(self) | {"verified": self.verified}


REGISTRY: dict[str, DatasetEntry] = {
    entry.name: entry
    for entry in [
        DatasetEntry(
            name="tinyshakespeare",
            url="https://raw.githubusercontent.com/karpathy/char-rnn/6f9487a6fe5b420b7ca9afb0d7c078e37c1d1b4e/data/tinyshakespeare/input.txt",
            filename="tinyshakespeare.txt",
            description="40,000 lines of Shakespeare plays (1.1 MB, ASCII): the classic char-level LM corpus",
            license="public domain text; repository karpathy/char-rnn is MIT",
            sha256="86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
            size=1115394,
        ),
        DatasetEntry(
            name="the-verdict",
            url=(
                "https://raw.githubusercontent.com/rasbt/LLMs-from-scratch/"
                "28c65cdfbc3338e2e040016eea4b7fdf556e4d57/ch02/01_main-chapter-code/the-verdict.txt"
            ),
            filename="the-verdict.txt",
            description=(
                "Edith Wharton's story 'The Verdict' (20 KB): the tiny pretraining text of LLMs-from-scratch"
            ),
            license="public domain text (1908); repository rasbt/LLMs-from-scratch is Apache-2.0",
            sha256="b41e41a68f0398a3154ae69e2e4c0e2694e17fe0d66730536837f1b01935b31f",
            size=20479,
        ),
        DatasetEntry(
            name="sms-spam",
            url="https://archive.ics.uci.edu/static/public/228/sms+spam+collection.zip",
            filename="sms-spam-collection.zip",
            description=(
                "UCI SMS Spam Collection: 5,574 SMS labelled ham/spam; a zip whose SMSSpamCollection "
                "file has one 'label<TAB>text' per line"
            ),
            license="CC BY 4.0 (as listed by the UCI Machine Learning Repository)",
            # UCI's archive cannot be fetched from where this was written. The hash is the one
            # pinned for this exact URL by several unrelated public projects (dataset cards and
            # download scripts on GitHub, retrieved on different dates); one of them also records
            # the size, 203,415 bytes, and a 477,907-byte SMSSpamCollection member, which matches
            # the file in hamzaaacodes/sms-spam-collection@f3e73e1 (477,917 bytes, a 10-byte
            # "Label<TAB>SMS" header added).
            sha256="1587ea43e58e82b14ff1f5425c88e17f8496bfcdb67a583dbff9eefaf9963ce3",
            size=203415,
        ),
        DatasetEntry(
            name="instruction-data",
            url=(
                "https://raw.githubusercontent.com/rasbt/LLMs-from-scratch/"
                "28c65cdfbc3338e2e040016eea4b7fdf556e4d57/ch07/01_main-chapter-code/instruction-data.json"
            ),
            filename="instruction-data.json",
            description=(
                "1,100 Alpaca-style instruction/input/output examples (JSON) from LLMs-from-scratch ch07"
            ),
            license="Apache-2.0 (repository rasbt/LLMs-from-scratch)",
            # hashed from the file at the commit in the URL (a git snapshot of the repository);
            # it has had one version only (commit 4ac480c "add instruction dataset")
            sha256="734deaf9598c891941c211f89c332eed2a35f323a759472fba095b7a2588a651",
            size=203524,
        ),
        DatasetEntry(
            name="unicode-sample",
            url=(
                "https://raw.githubusercontent.com/torvalds/uemacs/"
                "1c1b25ef723c952ca557cb5ff6d8db159ef1d4bc/UTF-8-demo.txt"
            ),
            filename="unicode-sample.txt",
            description=(
                "Markus Kuhn's UTF-8 demo (14 KB, 214 lines): Greek, Cyrillic, Georgian, Thai, Ethiopic, "
                "runes, Braille, IPA, maths, box drawing"
            ),
            license="none stated for the file (text by Markus Kuhn)",
            sha256="4af7ef81d09b6d6b56571771d0a1e46b4f43b3ec932425ddd52fdd481e7948cf",
            size=14058,
        ),
        DatasetEntry(
            name="unicode-hello",
            url=(
                "https://raw.githubusercontent.com/GNOME/pango/"
                "0b96e86efec3706601d7dc02b21c9bf19817c9de/utils/HELLO.txt"
            ),
            filename="unicode-hello.txt",
            description=(
                "'hello' in about 45 languages (2 KB, 54 lines): Devanagari, CJK, Hangul, kana, Arabic, "
                "Hebrew, Bengali, Tamil, Sinhala, Myanmar, Cherokee"
            ),
            license="LGPL-2.0 (repository GNOME/pango)",
            sha256="6bfe36a998014d12b1c6b095440da6e3e81916ee1d755d91f926758a1dfae5f8",
            size=1777,
        ),
        # Derived files that only data mirrors hold (``mirror_name``): seeded subsets of the files
        # at ``url``, pinned as the mirror holds them. Their own names, so a cache never mixes
        # them up with the upstream files.
        DatasetEntry(
            name="sms-spam-subset",
            url=(
                "https://raw.githubusercontent.com/hamzaaacodes/sms-spam-collection/"
                "f3e73e1e74e6330b62d1ee1983bba2a063184c26/SMSSpamCollection"
            ),
            filename="sms-spam-subset.tsv",
            description=(
                "4,460 of the 5,574 SMS Spam Collection messages (3,862 ham, 598 spam), shuffled, one "
                "'label<TAB>text' a line, no header; derived from the file at the URL (mirrors only)"
            ),
            license="CC BY 4.0 (as listed by the UCI Machine Learning Repository)",
            sha256="eca595233e432809f7ff2408bdbc1f3d34e454beca222b27d00a06e5fb530ee4",
            size=382961,
            mirror_name="sms-spam.tsv",
        ),
        DatasetEntry(
            name="instruction-data-subset",
            url=(
                "https://raw.githubusercontent.com/rasbt/LLMs-from-scratch/"
                "28c65cdfbc3338e2e040016eea4b7fdf556e4d57/ch07/01_main-chapter-code/instruction-data.json"
            ),
            filename="instruction-data-subset.json",
            description=(
                "990 of the 1,100 instruction-data examples, verbatim, in source order, written with "
                "indent=1; derived from the file at the URL (mirrors only)"
            ),
            license="Apache-2.0 (repository rasbt/LLMs-from-scratch)",
            sha256="c13086327ac59b1558f98dcd3fb13570f397fcd2e73c12cf7a240d3362584f19",
            size=158882,
            mirror_name="instruction-data.json",
        ),
        DatasetEntry(
            name="multi30k-train-subset",
            url="https://raw.githubusercontent.com/multi30k/dataset/a3d2e0d26b56f3846f66a952536ffed4e401d05a/data/task1/raw/train.de.gz",
            filename="multi30k-train.jsonl",
            description=(
                "Multi30K task 1 English-German training pairs, all 29,000, as JSONL {en, de} (whitespace "
                "stripped), joined from train.en.gz and train.de.gz at the URL's commit (mirrors only)"
            ),
            license="none stated in the repository (Flickr30K-derived; non-commercial research and education)",
            sha256="4a7268d73a573432bf378f1cf6824bc7544439ad24337504a139bc42b470821c",
            size=4462922,
            mirror_name="tasks/multi30k/train.jsonl",
        ),
        DatasetEntry(
            name="multi30k-val-subset",
            url="https://raw.githubusercontent.com/multi30k/dataset/a3d2e0d26b56f3846f66a952536ffed4e401d05a/data/task1/raw/val.de.gz",
            filename="multi30k-val.jsonl",
            description=(
                "Multi30K task 1 English-German validation pairs, all 1,014, as JSONL {en, de}, joined "
                "from val.en.gz and val.de.gz at the URL's commit (mirrors only)"
            ),
            license="none stated in the repository (Flickr30K-derived; non-commercial research and education)",
            sha256="f66192595cc7bd056841b7660453e0750092d08db19daf4951cd3bc85e2d7447",
            size=158554,
            mirror_name="tasks/multi30k/val.jsonl",
        ),
        DatasetEntry(
            name="scitldr-train",
            url="https://raw.githubusercontent.com/allenai/scitldr/5ccad9c00a60ad75c9e04abf7f27d0f53f983b20/SciTLDR-Data/SciTLDR-A/train.jsonl",
            filename="scitldr-train.jsonl",
            description=(
                "SciTLDR-A training set, all 1,992 abstracts as JSONL {document, summary, references, "
                "paper_id, title}, derived from the file at the URL (mirrors only)"
            ),
            license="Apache-2.0",
            sha256="c18b45143d157d2941f310753d57118357cc356606250a0b84393f92f3717497",
            size=3034788,
            mirror_name="tasks/scitldr/train.jsonl",
        ),
        DatasetEntry(
            name="scitldr-val",
            url="https://raw.githubusercontent.com/allenai/scitldr/5ccad9c00a60ad75c9e04abf7f27d0f53f983b20/SciTLDR-Data/SciTLDR-A/dev.jsonl",
            filename="scitldr-val.jsonl",
            description=(
                "SciTLDR-A dev set, all 619 abstracts as JSONL {document, summary, references (1-4), "
                "paper_id, title}, derived from the file at the URL (mirrors only)"
            ),
            license="Apache-2.0",
            sha256="5a4c4d526607d8fd467a39f04c36f64565b92b286054969f0d62831f152e4b93",
            size=1084978,
            mirror_name="tasks/scitldr/val.jsonl",
        ),
    ]
}


def get_entry(name: str) -> DatasetEntry:
    try:
        return REGISTRY[name]
    except KeyError:
        raise GptlabError(f"unknown dataset {name!r}: expected one of {', '.join(REGISTRY)}") from None


def cache_dir(directory: str | os.PathLike | None = None) -> Path:
    """The folder datasets are stored in (see the module docstring for the order of precedence)."""
    if directory is not None:
        return Path(directory).expanduser()
    root = os.environ.get(CACHE_ENV)
    return (Path(root) if root else DEFAULT_CACHE_ROOT).expanduser() / "datasets"


def mirror_folder() -> Path | None:
    """The local folder ``$GPTLAB_DATA_MIRROR`` names, or None when it is unset or a URL.

    Raises GptlabError when it names a folder that does not exist, rather than fall back to the
    network behind the user's back."""
    mirror = os.environ.get(MIRROR_ENV)
    if not mirror or "://" in mirror:
        return None
    folder = Path(mirror).expanduser()
    if not folder.is_dir():
        raise GptlabError(
            f"{MIRROR_ENV}={mirror} is not a folder (a mirror is a base URL, with ://, or an existing folder)"
        )
    return folder


def source(entry: DatasetEntry, url: str | None = None) -> str | Path:
    """Where ``entry`` comes from: ``url`` if given, else the mirror's copy (a file in a mirror
    folder, or a URL under a mirror URL), else the upstream URL."""
    if url:
        return url
    folder = mirror_folder()
    if folder is not None:
        return folder / entry.name_in_mirror
    mirror = os.environ.get(MIRROR_ENV)
    if mirror:
        return f"{mirror.rstrip('/')}/{entry.name_in_mirror}"
    if entry.mirror_name:
        raise GptlabError(
            f"{entry.name} is derived from {entry.url} and only data mirrors hold it: set {MIRROR_ENV} "
            "to a mirror (a folder or a base URL), or pass --url"
        )
    return entry.url


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def insecure_urls_allowed(allow: bool = False) -> bool:
    """``allow``, or ``$GPTLAB_ALLOW_INSECURE_URLS`` set to 1 / true / yes."""
    return allow or os.environ.get(INSECURE_ENV, "").strip().lower() in ("1", "true", "yes")


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: never resolved here, so not known to be this machine
        return False


def check_url(url: str, name: str, allow_insecure: bool = False) -> None:
    """Raise GptlabError unless ``url`` may be downloaded from (see the module docstring).

    Runs before any connection is opened, and again on every redirect."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if not scheme or (scheme != "file" and not parts.netloc):
        raise GptlabError(f"cannot download {name}: {url!r} is not a valid URL (expected https://HOST/PATH)")
    if scheme == "https" or (scheme == "http" and _is_loopback(parts.hostname)):
        return
    if insecure_urls_allowed(allow_insecure):
        return
    why = (
        "a file:// URL would copy a local file into the cache"
        if scheme == "file"
        else f"{scheme}:// to another machine can be read and rewritten on the way"
    )
    raise GptlabError(
        f"refusing to download {name} from {url}: only https:// URLs (and http:// to this machine) "
        f"are accepted, {why}; use an https:// URL, or pass --allow-insecure-url (or set "
        f"{INSECURE_ENV}=1) if you trust this source"
    )


def download(
    name: str,
    directory: str | os.PathLike | None = None,
    url: str | None = None,
    force: bool = False,
    progress: bool = True,
    allow_insecure_url: bool = False,
    allow_unverified: bool = False,
) -> Path:
    """Return the local path of dataset ``name``, downloading and verifying it unless already cached.

    ``force`` downloads again even when a valid cached file exists. ``allow_insecure_url`` accepts
    a non-HTTPS source (also ``$GPTLAB_ALLOW_INSECURE_URLS=1``); ``allow_unverified`` accepts an
    entry without a pinned hash. Raises GptlabError on an unknown name, a refused URL or entry, a
    network or HTTP error, a truncated or oversized transfer or a checksum mismatch.
    """
    entry = get_entry(name)
    if not entry.verified and not allow_unverified:
        raise GptlabError(
            f"{name} has no pinned sha256, so its content cannot be verified (only that the "
            "download completed); pass --allow-unverified (allow_unverified=True) to use it anyway"
        )
    src = source(entry, url)
    # checked even when the cache would answer: a bad --url or mirror setting is an error at once,
    # not only on the first cold cache
    if isinstance(src, Path):
        if not src.is_file():
            raise GptlabError(
                f"the data mirror has no {entry.name_in_mirror} for {name}: {src} does not exist"
            )
    else:
        check_url(src, name, allow_insecure_url)
    dest = cache_dir(directory) / entry.filename
    # a cached copy is reused if its hash matches; a corrupt or outdated one is replaced below
    if dest.is_file() and not force and (entry.sha256 is None or file_sha256(dest) == entry.sha256):
        return dest
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        # a unique .part name, so two processes downloading the same file cannot interleave writes
        fd, tmp = tempfile.mkstemp(prefix=f"{entry.filename}.", suffix=".part", dir=dest.parent)
    except OSError as e:
        raise GptlabError(f"cannot write to the dataset folder {dest.parent}: {e.strerror or e}") from None
    part = Path(tmp)
    try:
        with os.fdopen(fd, "wb") as out:
            if isinstance(src, Path):
                sha256 = _copy(src, out, entry)
            else:
                sha256 = _fetch(src, out, entry, progress, allow_insecure_url)
            out.flush()
            os.fsync(out.fileno())
        if entry.sha256 is not None and sha256 != entry.sha256:
            raise GptlabError(
                f"checksum mismatch for {name} from {src}: sha256 {sha256}, expected "
                f"{entry.sha256}; the partial file was deleted (a changed upstream file or a bad mirror?)"
            )
        os.replace(part, dest)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return dest


def _copy(path: Path, out, entry: DatasetEntry) -> str:
    """Copy the mirror file ``path`` into the open file ``out``; return the SHA-256 of its bytes.

    Held to a download's rules: more bytes than the pinned size stop the copy, and the caller
    checks the hash."""
    limit = entry.size if entry.verified else None
    digest = hashlib.sha256()
    copied = 0
    try:
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK_BYTES):
                out.write(chunk)
                digest.update(chunk)
                copied += len(chunk)
                if limit is not None and copied > limit:
                    raise GptlabError(
                        f"{path} holds more than the {limit:,} bytes expected for {entry.name}; "
                        "stopped and deleted the partial file (a different version in the mirror?)"
                    )
    except OSError as e:
        raise GptlabError(
            f"cannot copy {entry.name} from the data mirror {path}: {e.strerror or e}"
        ) from None
    return digest.hexdigest()


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    """Applies check_url to every redirect target, so an https:// URL cannot bounce to http://."""

    def __init__(self, name: str, allow_insecure: bool):
        super().__init__()
        self.name, self.allow_insecure = name, allow_insecure

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        check_url(newurl, self.name, self.allow_insecure)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _fetch(url: str, out, entry: DatasetEntry, progress: bool, allow_insecure: bool = False) -> str:
    """Stream ``url`` into the open file ``out``; return the SHA-256 of the bytes received."""
    from tqdm import tqdm

    from gptlab import __version__

    # with a pinned hash, more bytes than the pinned size can only end in a mismatch: stop early
    # rather than let a bad source fill the disk
    limit = entry.size if entry.verified else None
    digest = hashlib.sha256()
    received = 0
    opener = urllib.request.build_opener(_CheckedRedirects(entry.name, allow_insecure))
    try:
        # some hosts refuse urllib's default User-Agent; say who we are instead
        request = urllib.request.Request(
            url, headers={"User-Agent": f"gptlab/{__version__} (dataset download)"}
        )
        with opener.open(request, timeout=TIMEOUT_S) as response:
            length = response.headers.get("Content-Length")
            expected = int(length) if length and length.isdigit() else entry.size
            with tqdm(
                total=expected,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=entry.filename,
                disable=None if progress else True,  # None: only on a terminal
            ) as bar:
                while chunk := response.read(CHUNK_BYTES):
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
                    if limit is not None and received > limit:
                        raise GptlabError(
                            f"{url} sent more than the {limit:,} bytes expected for {entry.name}; "
                            "stopped and deleted the partial file (a changed upstream file or a bad mirror?)"
                        )
    except urllib.error.HTTPError as e:
        raise GptlabError(f"downloading {entry.name} from {url} failed: HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        raise GptlabError(
            f"cannot reach {url} to download {entry.name}: {e.reason} (offline? set {MIRROR_ENV} to a data "
            "mirror's base URL or folder, or pass --url)"
        ) from None
    except ValueError as e:  # not a URL at all, e.g. a missing scheme
        raise GptlabError(f"cannot download {entry.name}: {url!r} is not a valid URL ({e})") from None
    except TimeoutError:
        raise GptlabError(f"downloading {entry.name} from {url} timed out after {TIMEOUT_S:.0f} s") from None
    except (OSError, http.client.HTTPException) as e:  # connection reset, bad response, disk full, ...
        raise GptlabError(f"downloading {entry.name} from {url} failed: {e}") from None
    if length and length.isdigit() and received != int(length):
        raise GptlabError(
            f"download of {entry.name} from {url} was cut short: got {received} of {length} bytes"
        )
    return digest.hexdigest()


def list_datasets(directory: str | os.PathLike | None = None) -> list[dict]:
    """The registry as dicts, each with ``cached`` (the cached file's path, or None)."""
    folder = cache_dir(directory)
    rows = []
    for entry in REGISTRY.values():
        path = folder / entry.filename
        rows.append(entry.to_dict() | {"cached": str(path) if path.is_file() else None})
    return rows
