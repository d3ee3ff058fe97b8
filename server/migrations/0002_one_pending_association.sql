-- The database's backstop for "one open association request per pair": at most one PENDING row per
-- (dataset, benchmark) and per (model, benchmark). The routes check the rule under the write lock; this
-- index holds it against any writer that does not take that lock. Rows of a pair are only added when
-- the latest is REJECTED or APPROVED, and only the latest is decided, so existing data satisfies it.
-- Same SQL on SQLite and PostgreSQL (partial unique indexes).
CREATE UNIQUE INDEX benchmark_datasets_one_pending ON benchmark_datasets (dataset, benchmark)
    WHERE approval_status = 'PENDING';
CREATE UNIQUE INDEX benchmark_models_one_pending ON benchmark_models (model, benchmark)
    WHERE approval_status = 'PENDING';
