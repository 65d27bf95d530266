"""Named public datasets: where to download them, how to check them, where they are cached.

``download("tinyshakespeare")`` returns the path of the cached file, downloading it first when
needed. The download streams into ``<filename>.part`` next to the destination, hashing as it goes;
only a complete file whose SHA-256 matches the registry is renamed onto the final name, so a
crash, a truncated transfer or a tampered mirror never leaves a file that looks valid. A cached file
whose hash matches is reused without any network access.

Resuming: a transfer cut short (a dropped connection, a timeout, Ctrl-C) keeps its ``.part``; the
next ``download`` hashes the bytes already there and asks the server for the rest (HTTP ``Range:
bytes=N-``). A ``206 Partial Content`` reply whose ``Content-Range`` starts at N is appended; any
other reply (a server without ranges) starts the file again. The whole file's hash is checked as
always, so a ``.part`` from another version of the file ends in a mismatch, which deletes it. A
lock on the ``.part`` keeps two processes from writing it at once.

Upstream URLs name a fixed commit where the host allows it, so a pinned hash cannot go stale.
Every entry pins its SHA-256 and size, or, for a file in a git repository whose bytes could not be
read where the entry was written but whose tree could, its git blob id (``git_blob``: the SHA-1
``git hash-object`` prints, of ``"blob <size>\\0"`` and the bytes; the file at the URL's commit
has exactly that id). SHA-1 has known collision attacks, but those need whoever makes the file to
make both files; matching a file that already exists (a second preimage) is still out of reach, so
a pinned blob id identifies the upstream file. An entry with neither (``sha256=None``) could only
be checked for completeness (its size matches the ``Content-Length``), not for content, so
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

Most entries are upstream files that a mirror holds byte for byte, under ``filename`` or, where the
mirror keeps it in a folder, under ``mirror_path`` (``"tasks/winobias/..."``). An entry with a
``mirror_name`` is a file only data mirrors hold, derived from its ``url`` (a subset, or
reformatted); it is stored in the mirror under ``mirror_name`` (which may name a folder too:
``"tasks/truthfulqa/mc_task.json"``) and cached under its own ``filename``, and without a mirror
(or ``--url``) there is nothing to download it from.

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
    # set for an upstream file that a mirror keeps under another path than ``filename``
    mirror_path: str | None = None
    # the file's git blob id (SHA-1 hex), pinned where its sha256 could not be (see the module docstring)
    git_blob: str | None = None

    @property
    def verified(self) -> bool:
        return self.sha256 is not None or self.git_blob is not None

    @property
    def name_in_mirror(self) -> str:
        return self.mirror_name or self.mirror_path or self.filename

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
        # Benchmark task data (gptlab eval tasks): seeded subsets that data mirrors hold under
        # tasks/<task>/<file> (the layout of --data-dir), derived from the upstream file at ``url``.
        DatasetEntry(
            name="lambada-openai-subset",
            url=(
                "https://raw.githubusercontent.com/mosaicml/llm-foundry/8c8dd48f72168c5d51e2f7b151595892a8fba43d/"
                "scripts/eval/local_data/language_understanding/lambada_openai.jsonl"
            ),
            filename="lambada-openai-subset.jsonl",
            description=(
                "LAMBADA (OpenAI's detokenised test set): 1,031 of the 5,153 passages, random, in source "
                "order, one {context, continuation} JSON object a line; derived from the file at the URL (mirrors only)"
            ),
            license="CC BY 4.0 (LAMBADA); repository mosaicml/llm-foundry is Apache-2.0",
            sha256="ef5c875280e3bdea91b44f85a2748c20c45659a608959e05115adc0f2dddd887",
            size=382164,
            mirror_name="tasks/lambada/lambada_openai.jsonl",
        ),
        DatasetEntry(
            name="sst2-validation-subset",
            url=(
                "https://raw.githubusercontent.com/forest-snow/alps/3c7ef2c98249fc975a897b27f275695f97d5b7a9/"
                "data/SST-2/test.tsv"
            ),
            filename="sst2-validation-subset.jsonl",
            description=(
                "SST-2 (GLUE) dev: 436 of the 872 sentences, stratified by label, one {idx, sentence, label} "
                "JSON object a line; derived from the GLUE dev file (byte-identical at the URL) (mirrors only)"
            ),
            license="none stated by the SST authors (distributed through GLUE)",
            sha256="4428ef5f68fb38b29f7aee9827664c5ad38ebc461ffc5d49ac67357597b2b460",
            size=63884,
            mirror_name="tasks/sst2/validation.jsonl",
        ),
        DatasetEntry(
            name="sst2-train-subset",
            url=(
                "https://raw.githubusercontent.com/awake020/pytorch_Bert_sst2/ce2ab1719d32182e6233b24b2de246bd32814fde/"
                "SST-2/train.tsv"
            ),
            filename="sst2-train-subset.jsonl",
            description=(
                "SST-2 (GLUE) train: 20,000 of the 67,349 rows (sentences and phrases), one {idx, sentence, "
                "label} JSON object a line; derived from the GLUE training rows (reformatted at the URL) (mirrors only)"
            ),
            license="none stated by the SST authors (distributed through GLUE)",
            sha256="a0c087589811e0fba2f5b20e0311de119975cdb3ab9c6258baf6a020d458142c",
            size=1907015,
            mirror_name="tasks/sst2/train.jsonl",
        ),
        DatasetEntry(
            name="truthfulqa-mc-subset",
            url=(
                "https://raw.githubusercontent.com/sylinrl/TruthfulQA/d71c110897f5d31c5d7f309e7bc316c152f6f031/"
                "data/mc_task.json"
            ),
            filename="truthfulqa-mc-subset.json",
            description=(
                "TruthfulQA multiple choice (January 2025 revision): 237 of the 790 questions with their "
                "mc0/mc1/mc2 targets, verbatim; derived from the file at the URL (mirrors only)"
            ),
            license="Apache-2.0 (repository sylinrl/TruthfulQA)",
            sha256="89696cf86a78c75559fc27cd2cbf851ed43943afee4f654a93e3735deecf098c",
            size=223221,
            mirror_name="tasks/truthfulqa/mc_task.json",
        ),
        DatasetEntry(
            name="truthfulqa-csv-subset",
            url=(
                "https://raw.githubusercontent.com/sylinrl/TruthfulQA/d71c110897f5d31c5d7f309e7bc316c152f6f031/"
                "TruthfulQA.csv"
            ),
            filename="truthfulqa-csv-subset.csv",
            description=(
                "TruthfulQA.csv rows (Type, Category, Question, answers, Source) of the same 237 questions, "
                "in the same order as truthfulqa-mc-subset; derived from the file at the URL (mirrors only)"
            ),
            license="Apache-2.0 (repository sylinrl/TruthfulQA)",
            sha256="7cfe4d368f0439aabee690b49da1ff691dc63647311a2da9f673971f2227fd4f",
            size=151427,
            mirror_name="tasks/truthfulqa/TruthfulQA.csv",
        ),
        DatasetEntry(
            name="crows-pairs-subset",
            url=(
                "https://raw.githubusercontent.com/nyu-mll/crows-pairs/8aaac11c485473159ec9328a65253a5be9a479dc/"
                "data/crows_pairs_anonymized.csv"
            ),
            filename="crows-pairs-subset.csv",
            description=(
                "CrowS-Pairs: 454 of the 1,508 sentence pairs, 30% of each of the 9 bias types, rows verbatim "
                "(offensive content; for evaluation only); derived from the file at the URL (mirrors only)"
            ),
            license="CC BY-SA 4.0",
            sha256="6ac8c24e48bcbb55321a86428f251c9a232853dbce631eb20f13c365d47fc478",
            size=130307,
            mirror_name="tasks/crows_pairs/crows_pairs.csv",
        ),
        DatasetEntry(
            name="advbench-subset",
            url=(
                "https://raw.githubusercontent.com/llm-attacks/llm-attacks/098262edf85f807224e70ecd87b9d83716bf6b73/"
                "data/advbench/harmful_behaviors.csv"
            ),
            filename="advbench-subset.csv",
            description=(
                "AdvBench harmful behaviours: 156 of the 520 (goal, target) rows, random, verbatim (harmful "
                "content; for refusal evaluation only); derived from the file at the URL (mirrors only)"
            ),
            license="MIT (repository llm-attacks/llm-attacks)",
            sha256="ecab7e4516cf201c170058883b36fc5f0a4e187b7b8b9ad2bfe8037c60b8ef57",
            size=24915,
            mirror_name="tasks/advbench/harmful_behaviors.csv",
        ),
        # the complete upstream files (hashed at the URL's commit from a git snapshot of the repository,
        # byte-identical to the mirror's copies), kept by mirrors under tasks/winobias/
        DatasetEntry(
            name="winobias-pro-type1",
            url=(
                "https://raw.githubusercontent.com/uclanlp/corefBias/0bce984dd081bbc10b0622f326727a024c607895/"
                "WinoBias/wino/data/pro_stereotyped_type1.txt.dev"
            ),
            filename="winobias-pro-type1.txt",
            description=(
                "WinoBias dev, pro-stereotypical, type 1: 396 sentences, 'N sentence' a line, brackets "
                "marking the occupation and its pronoun(s)"
            ),
            license="MIT (repository uclanlp/corefBias)",
            sha256="dd55a0d220fe4c0ceb63dd4648223fb4fe1a58d5ad95c116a002ad24b0e292a5",
            size=32786,
            mirror_path="tasks/winobias/pro_stereotyped_type1.txt.dev",
        ),
        DatasetEntry(
            name="winobias-anti-type1",
            url=(
                "https://raw.githubusercontent.com/uclanlp/corefBias/0bce984dd081bbc10b0622f326727a024c607895/"
                "WinoBias/wino/data/anti_stereotyped_type1.txt.dev"
            ),
            filename="winobias-anti-type1.txt",
            description=(
                "WinoBias dev, anti-stereotypical, type 1: 396 sentences, 'N sentence' a line, brackets "
                "marking the occupation and its pronoun(s)"
            ),
            license="MIT (repository uclanlp/corefBias)",
            sha256="a4e0ebae344e78b56f657a42e8ae684b9db7747d177c5e7149c0907ebb7f3bf6",
            size=32782,
            mirror_path="tasks/winobias/anti_stereotyped_type1.txt.dev",
        ),
        DatasetEntry(
            name="winobias-pro-type2",
            url=(
                "https://raw.githubusercontent.com/uclanlp/corefBias/0bce984dd081bbc10b0622f326727a024c607895/"
                "WinoBias/wino/data/pro_stereotyped_type2.txt.dev"
            ),
            filename="winobias-pro-type2.txt",
            description=(
                "WinoBias dev, pro-stereotypical, type 2: 396 sentences, 'N sentence' a line, brackets "
                "marking the occupation and its pronoun(s)"
            ),
            license="MIT (repository uclanlp/corefBias)",
            sha256="8f0250de723cea9328e3eaf7169e07936f01aa5909ce7aa580db66eb803f4e86",
            size=30884,
            mirror_path="tasks/winobias/pro_stereotyped_type2.txt.dev",
        ),
        DatasetEntry(
            name="winobias-anti-type2",
            url=(
                "https://raw.githubusercontent.com/uclanlp/corefBias/0bce984dd081bbc10b0622f326727a024c607895/"
                "WinoBias/wino/data/anti_stereotyped_type2.txt.dev"
            ),
            filename="winobias-anti-type2.txt",
            description=(
                "WinoBias dev, anti-stereotypical, type 2: 396 sentences, 'N sentence' a line, brackets "
                "marking the occupation and its pronoun(s)"
            ),
            license="MIT (repository uclanlp/corefBias)",
            sha256="763ad829ad724f9a85ead689ba8ca69072020cb1238def6210f0fc6a47b97e59",
            size=30875,
            mirror_path="tasks/winobias/anti_stereotyped_type2.txt.dev",
        ),
        # The complete upstream files the crows-pairs and lambada subsets come from (hashed at the
        # URL's commit from git snapshots of the repositories): the full sets for a user with a
        # network. Saved as <task>/<file> under a folder (``--data-dir``), the tasks score all of them.
        DatasetEntry(
            name="crows-pairs",
            url=(
                "https://raw.githubusercontent.com/nyu-mll/crows-pairs/8aaac11c485473159ec9328a65253a5be9a479dc/"
                "data/crows_pairs_anonymized.csv"
            ),
            filename="crows_pairs_anonymized.csv",
            description=(
                "CrowS-Pairs: all 1,508 sentence pairs in 9 bias types (offensive content; for evaluation "
                "only); as crows_pairs/crows_pairs.csv under --data-dir, the crows_pairs task scores them all"
            ),
            license="CC BY-SA 4.0",
            sha256="dfb36986ce0502abbaf7055b9176da3d08d48e07df1251991b5dfbcbceab9d0c",
            size=437764,
        ),
        DatasetEntry(
            name="lambada-openai",
            url=(
                "https://raw.githubusercontent.com/mosaicml/llm-foundry/8c8dd48f72168c5d51e2f7b151595892a8fba43d/"
                "scripts/eval/local_data/language_understanding/lambada_openai.jsonl"
            ),
            filename="lambada_openai.jsonl",
            description=(
                "LAMBADA (OpenAI's detokenised test set): all 5,153 passages, one {context, continuation} "
                "JSON object a line; as lambada/lambada_openai.jsonl under --data-dir, the lambada task scores them all"
            ),
            license="CC BY 4.0 (LAMBADA); repository mosaicml/llm-foundry is Apache-2.0",
            sha256="411bfbe5b9054346b6a19299c0242670adbefb9162efd958593cbc0290b8c9dc",
            size=1895241,
        ),
        # HellaSwag and PopQA: upstream only (no mirror copy). The git snapshots of their
        # repositories available where these entries were written list the files (with their blob
        # ids at the URL's commit) but hold no bytes, so no sha256 or size could be computed: they
        # are pinned by git blob id, read from the commit's tree.
        DatasetEntry(
            name="hellaswag-val",
            url=(
                "https://raw.githubusercontent.com/rowanz/hellaswag/a29ff8e9a04bba4bd6588223785ce105328adc57/"
                "data/hellaswag_val.jsonl"
            ),
            filename="hellaswag_val.jsonl",
            description=(
                "HellaSwag validation: 10,042 contexts with 4 endings each (ind, activity_label, ctx_a, ctx_b, "
                "ctx, endings, label, ...), one JSON object a line; the split lm-evaluation-harness scores"
            ),
            license="MIT (repository rowanz/hellaswag)",
            git_blob="0f5ee25d72216f12317d5d8a7b92deafa423d81e",
            mirror_path="tasks/hellaswag/hellaswag_val.jsonl",
        ),
        DatasetEntry(
            name="hellaswag-train",
            url=(
                "https://raw.githubusercontent.com/rowanz/hellaswag/a29ff8e9a04bba4bd6588223785ce105328adc57/"
                "data/hellaswag_train.jsonl"
            ),
            filename="hellaswag_train.jsonl",
            description=(
                "HellaSwag training split: 39,905 contexts with 4 endings each (the few-shot source "
                "lm-evaluation-harness draws hellaswag's examples from)"
            ),
            license="MIT (repository rowanz/hellaswag)",
            git_blob="1997e15fe638ef2aeec6993471159295cd75aab7",
            mirror_path="tasks/hellaswag/hellaswag_train.jsonl",
        ),
        DatasetEntry(
            name="popqa",
            url=(
                "https://raw.githubusercontent.com/AlexTMallen/adaptive-retrieval/2b70c1ea7db206be429e90b6dbaf850f4514c5ec/"
                "data/popQA.tsv"
            ),
            filename="popQA.tsv",
            description=(
                "PopQA: 14,267 entity-centric questions from Wikidata triples with subject popularity (s_pop, "
                "monthly Wikipedia page views) and possible_answers (a JSON list); tab-separated with a header"
            ),
            license="MIT (repository AlexTMallen/adaptive-retrieval)",
            git_blob="0ad1a9bbe0c198f511131c011d71dacefee41001",
            mirror_path="tasks/popqa/popQA.tsv",
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


# Pretraining corpora (gptlab data prepare streams them; see docs/data.md). Hugging Face shows no
# checksum for these files on the pages that could be read where these entries were written, so
# none is pinned: `data get` needs --allow-unverified, and a download is only checked for
# completeness. URLs name a fixed commit, so at least the file cannot change under the name.
NO_CHECKSUM = "no checksum published (where this entry was written): --allow-unverified"
TINYSTORIES = (
    "https://huggingface.co/datasets/roneneldan/TinyStories/resolve/f54c09fd23315a6f9c86f9dc80f725de7d8f9c64"
)
FINEWEB_EDU_10BT = (
    "https://huggingface.co/datasets/HuggingFaceFW/fineweb-edu/resolve/5b89d1ea9319fe101b3cbdacd89a903aca1d6052/"
    "sample/10BT"
)
FINEWEB_EDU_SHARDS = 14  # 000_00000.parquet .. 013_00000.parquet, ~2.15 GB each
OPENWEBTEXT = "https://huggingface.co/datasets/Skylion007/openwebtext/resolve/39d1a6d3f3a4c838b27bbc65bfb14a2f6f727740/subsets"
OPENWEBTEXT_SUBSETS = 21  # urlsf_subset00.tar .. urlsf_subset20.tar, ~630 MB each

CORPORA = (
    [
        DatasetEntry(
            name=f"tinystories-{split}",
            url=f"{TINYSTORIES}/TinyStoriesV2-GPT4-{split}.txt",
            filename=f"TinyStoriesV2-GPT4-{split}.txt",
            description=(
                f"TinyStories V2 (GPT-4 stories only), {split} split ({size}): short stories a 3-4 year old "
                f"understands, separated by <|endoftext|> lines; {NO_CHECKSUM}"
            ),
            license="CDLA-Sharing-1.0 (roneneldan/TinyStories)",
        )
        for split, size in (("train", "2.23 GB"), ("valid", "22.5 MB"))
    ]
    + [
        DatasetEntry(
            name=f"fineweb-edu-10bt-{i:02d}",
            url=f"{FINEWEB_EDU_10BT}/{i:03d}_00000.parquet",
            filename=f"fineweb-edu-10bt-{i:03d}_00000.parquet",
            description=(
                f"FineWeb-Edu sample-10BT, Parquet shard {i + 1} of {FINEWEB_EDU_SHARDS} (~2.15 GB; column 'text'): "
                f"educational web pages from Common Crawl; {NO_CHECKSUM}"
            ),
            license="ODC-By 1.0 (HuggingFaceFW/fineweb-edu), subject to Common Crawl's terms of use",
        )
        for i in range(FINEWEB_EDU_SHARDS)
    ]
    + [
        DatasetEntry(
            name=f"openwebtext-{i:02d}",
            url=f"{OPENWEBTEXT}/urlsf_subset{i:02d}.tar",
            filename=f"openwebtext-urlsf_subset{i:02d}.tar",
            description=(
                f"OpenWebText, subset {i + 1} of {OPENWEBTEXT_SUBSETS} (~630 MB): a tar of .xz archives of "
                f"web-page .txt files; extract before `data prepare` (see docs/data.md); {NO_CHECKSUM}"
            ),
            license="CC0-1.0 as listed (Skylion007/openwebtext); the pages' own copyrights apply",
        )
        for i in range(OPENWEBTEXT_SUBSETS)
    ]
)
REGISTRY.update((entry.name, entry) for entry in CORPORA)


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


def git_blob_id(path: Path) -> str:
    """The git blob id of a file (what ``git hash-object`` prints): SHA-1 of ``"blob <size>\\0"``
    and the bytes."""
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _mismatch(entry: DatasetEntry, path: Path, sha256: str | None = None) -> str | None:
    """How the file at ``path`` differs from what ``entry`` pins (None: it matches, or nothing is
    pinned). ``sha256``: the file's, when already known."""
    if entry.sha256 is not None:
        sha256 = sha256 or file_sha256(path)
        if sha256 != entry.sha256:
            return f"sha256 {sha256}, expected {entry.sha256}"
    if entry.git_blob is not None:
        blob = git_blob_id(path)
        if blob != entry.git_blob:
            return f"git blob id {blob}, expected {entry.git_blob}"
    return None


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
            f"{name} has no pinned sha256 or git blob id, so its content cannot be verified (only that the "
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
    if dest.is_file() and not force and _mismatch(entry, dest) is None:
        return dest
    part = dest.with_name(dest.name + ".part")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        out = open(part, "ab")  # noqa: SIM115 - closed below; "a": keeps a cut transfer's bytes
    except OSError as e:
        raise GptlabError(f"cannot write to the dataset folder {dest.parent}: {e.strerror or e}") from None
    complete = locked = False
    try:
        with out:
            _lock(out, part, name)
            locked = True
            if isinstance(src, Path):
                out.truncate(0)  # a local copy is quick: start it again
                sha256 = _copy(src, out, entry)
            else:
                sha256 = _fetch(src, out, entry, progress, allow_insecure_url)
            out.flush()
            os.fsync(out.fileno())
        complete = True
        mismatch = _mismatch(entry, part, sha256)
        if mismatch:
            raise GptlabError(
                f"checksum mismatch for {name} from {src}: {mismatch}; the partial file was deleted "
                "(a changed upstream file or a bad mirror?)"
            )
        os.replace(part, dest)
    except BaseException as e:
        if not locked:  # another process owns the .part: leave it alone
            raise
        # keep the bytes of a transfer that was cut short, so the next call resumes it; anything
        # else (a wrong hash, too many bytes, an HTTP error, an empty file) is deleted
        kept = part.stat().st_size if part.exists() else 0
        if complete or not isinstance(e, (_CutShort, KeyboardInterrupt)) or not kept:
            part.unlink(missing_ok=True)
            kept = 0
        if isinstance(e, _CutShort):
            hint = f" (the {kept:,} bytes so far are kept: run it again to resume)" if kept else ""
            raise GptlabError(f"{e}{hint}") from None
        raise
    return dest


class _CutShort(Exception):
    """A transfer that ended early (connection dropped or timed out): resumable."""


def _lock(f, part: Path, name: str) -> None:
    """An exclusive lock on the open .part file, so two downloads never interleave their writes."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks here; one download at a time is the user's job
        return
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        raise GptlabError(f"another process is downloading {name} into {part} right now") from None


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
    """Stream ``url`` into the open file ``out`` (appended to the bytes already there when the
    server honours a Range request, else from the start); return the SHA-256 of the whole file.
    A transfer that stops early raises _CutShort."""
    from tqdm import tqdm

    from gptlab import __version__

    # with a pinned hash, more bytes than the pinned size can only end in a mismatch: stop early
    # rather than let a bad source fill the disk
    limit = entry.size if entry.verified else None
    have = out.seek(0, os.SEEK_END)
    if limit is not None and have >= limit:
        have = 0  # a .part as long as the file (or longer) cannot be resumed; start again
    opener = urllib.request.build_opener(_CheckedRedirects(entry.name, allow_insecure))
    # some hosts refuse urllib's default User-Agent; say who we are instead
    headers = {"User-Agent": f"gptlab/{__version__} (dataset download)"}
    if have:
        headers["Range"] = f"bytes={have}-"
    received = 0
    try:
        with opener.open(urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S) as response:
            if not (have and response.status == 206 and _range_start(response) == have):
                have = 0  # the server sent the whole file (no ranges): start the .part again
            out.seek(have)
            out.truncate()
            digest = _hash_prefix(out, have)
            length = response.headers.get("Content-Length")
            expected = have + int(length) if length and length.isdigit() else entry.size
            with tqdm(
                total=expected,
                initial=have,
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
                    if limit is not None and have + received > limit:
                        raise GptlabError(
                            f"{url} sent more than the {limit:,} bytes expected for {entry.name}; "
                            "stopped and deleted the partial file (a changed upstream file or a bad mirror?)"
                        )
    except urllib.error.HTTPError as e:
        raise GptlabError(f"downloading {entry.name} from {url} failed: HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        if isinstance(e.reason, TimeoutError) and received:
            raise _CutShort(
                f"downloading {entry.name} from {url} timed out after {TIMEOUT_S:.0f} s"
            ) from None
        raise GptlabError(
            f"cannot reach {url} to download {entry.name}: {e.reason} (offline? set {MIRROR_ENV} to a data "
            "mirror's base URL or folder, or pass --url)"
        ) from None
    except ValueError as e:  # not a URL at all, e.g. a missing scheme
        raise GptlabError(f"cannot download {entry.name}: {url!r} is not a valid URL ({e})") from None
    except TimeoutError:
        raise _CutShort(f"downloading {entry.name} from {url} timed out after {TIMEOUT_S:.0f} s") from None
    except (ConnectionError, http.client.IncompleteRead) as e:  # dropped mid-transfer
        raise _CutShort(f"downloading {entry.name} from {url} was cut short: {e}") from None
    except (OSError, http.client.HTTPException) as e:  # bad response, disk full, ...
        raise GptlabError(f"downloading {entry.name} from {url} failed: {e}") from None
    if length and length.isdigit() and received != int(length):
        raise _CutShort(
            f"download of {entry.name} from {url} was cut short: got {have + received} of "
            f"{have + int(length)} bytes"
        )
    return digest.hexdigest()


def _range_start(response) -> int | None:
    """The first byte of a 206 reply's ``Content-Range: bytes START-END/TOTAL``, or None."""
    value = response.headers.get("Content-Range", "")
    unit, _, rest = value.partition(" ")
    start = rest.partition("-")[0]
    return int(start) if unit == "bytes" and start.isdigit() else None


def _hash_prefix(f, n: int):
    """A sha256 object fed the first ``n`` bytes of the open file ``f`` (the bytes a resumed
    transfer keeps), leaving the position at ``n``."""
    digest = hashlib.sha256()
    f.flush()
    with open(f.name, "rb") as again:
        left = n
        while left and (block := again.read(min(CHUNK_BYTES, left))):
            digest.update(block)
            left -= len(block)
    f.seek(n)
    return digest


def list_datasets(directory: str | os.PathLike | None = None) -> list[dict]:
    """The registry as dicts, each with ``cached`` (the cached file's path, or None)."""
    folder = cache_dir(directory)
    rows = []
    for entry in REGISTRY.values():
        path = folder / entry.filename
        rows.append(entry.to_dict() | {"cached": str(path) if path.is_file() else None})
    return rows
