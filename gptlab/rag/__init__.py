"""Retrieval-augmented generation, written from scratch.

- ``chunking``: documents read in a stream (a file of any size, a folder, or JSONL rows) and cut
  into overlapping windows of words;
- ``bm25``: Okapi BM25 (Lucene's variant) over those chunks;
- ``dense``: embedders (the offline MiniLM sentence encoder, or a gptlab run's mean-pooled states)
  and a brute-force cosine top-k;
- ``fusion``: reciprocal rank fusion of the two rankings;
- ``index``: build, save (safetensors + JSON, never pickle), load, search;
- ``prompt``: the prompt with numbered, cited chunks, fitted to the model's context;
- ``ask`` and ``evaluate``: answer a question, and score retrieval (recall@k, MRR) and answers
  with and without retrieval.
"""
