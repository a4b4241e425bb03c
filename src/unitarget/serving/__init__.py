"""Serving: export a trained run to ONNX, serve it over HTTP, score whole audiences in batch.

    export.py      run directory -> ONNX graph + encoder + manifest, checked against PyTorch
    manifest.py    what an export holds, with a sha256 per file (tampered or truncated -> error)
    runtime.py     an exported model loaded for inference: verified files, ONNX Runtime session,
                   the saved FeatureEncoder (tables) and the request encoder (requests)
    encoding.py    requests encoded straight from their pydantic objects, a batch of them at once
                   (the /v1/score fast path)
    tables.py      requests -> a pyarrow table with the contract's column names (batch scoring,
                   and the reference the request encoder is tested against)
    schemas.py     pydantic request and response bodies (strict: unknown keys and NaN rejected)
    service.py     scoring and ranking one request, minus HTTP
    responses.py   response bodies as JSON bytes, written from the probability array
    registry.py    model versions inside one models directory: load, reload, rollback, follow
    heap.py        a worker's heap after each switch: frozen, collected less often, trimmed
    pointer.py     the version pointer every worker follows (atomic file + writer lock)
    batching.py    dynamic batching: concurrent requests share one encoding and ONNX Runtime call
    app.py         the FastAPI app factory and ``serve``; routes.py, middleware.py (the guard),
                   metrics.py (Prometheus), settings.py, workers.py (SO_REUSEPORT processes)
    audience.py    every user of a table scored for one campaign, streamed in chunks

Nothing here is imported by the training code; FastAPI and ONNX Runtime are the ``serve`` extra.
"""
