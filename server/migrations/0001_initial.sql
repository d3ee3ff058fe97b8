-- The registry's tables. Plain SQL that SQLite (>= 3.35) and PostgreSQL both accept: ids come from
-- id_counters (UPDATE ... RETURNING) instead of a dialect-specific auto-increment; JSON is stored as
-- TEXT; booleans as INTEGER 0/1; timestamps as ISO 8601 UTC text with microseconds (sortable).
-- Column names are the API field names (owner, dataset, benchmark, ...).

CREATE TABLE id_counters (
    name TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO id_counters (name, value) VALUES
    ('users', 0), ('tokens', 0), ('mlcubes', 0), ('models', 0), ('benchmarks', 0), ('datasets', 0),
    ('benchmark_datasets', 0), ('benchmark_models', 0), ('results', 0);

CREATE TABLE users (
    id BIGINT PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    email TEXT NOT NULL UNIQUE,
    first_name TEXT NOT NULL DEFAULT '',
    last_name TEXT NOT NULL DEFAULT '',
    is_admin INTEGER NOT NULL DEFAULT 0,
    metadata TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL
);

CREATE TABLE tokens (
    id BIGINT PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users (id),
    token_hash TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL
);

CREATE TABLE mlcubes (
    id BIGINT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    container_config TEXT NOT NULL,
    parameters_config TEXT,
    image_hash TEXT NOT NULL,
    additional_files_tarball_url TEXT NOT NULL DEFAULT '',
    additional_files_tarball_hash TEXT NOT NULL DEFAULT '',
    owner BIGINT NOT NULL REFERENCES users (id),
    state TEXT NOT NULL DEFAULT 'DEVELOPMENT',
    is_valid INTEGER NOT NULL DEFAULT 1,
    metadata TEXT NOT NULL DEFAULT '{}',
    user_metadata TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL,
    modified_at TEXT NOT NULL
);
CREATE INDEX mlcubes_owner ON mlcubes (owner);

CREATE TABLE models (
    id BIGINT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    owner BIGINT NOT NULL REFERENCES users (id),
    type TEXT NOT NULL DEFAULT 'CONTAINER',
    container BIGINT UNIQUE REFERENCES mlcubes (id),
    state TEXT NOT NULL DEFAULT 'DEVELOPMENT',
    is_valid INTEGER NOT NULL DEFAULT 1,
    metadata TEXT NOT NULL DEFAULT '{}',
    user_metadata TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL,
    modified_at TEXT NOT NULL
);
CREATE INDEX models_owner ON models (owner);

CREATE TABLE benchmarks (
    id BIGINT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    docs_url TEXT NOT NULL DEFAULT '',
    owner BIGINT NOT NULL REFERENCES users (id),
    demo_dataset_tarball_url TEXT NOT NULL DEFAULT '',
    demo_dataset_tarball_hash TEXT NOT NULL DEFAULT '',
    demo_dataset_generated_uid TEXT NOT NULL DEFAULT '',
    data_preparation_mlcube BIGINT NOT NULL REFERENCES mlcubes (id),
    reference_model BIGINT NOT NULL REFERENCES models (id),
    data_evaluator_mlcube BIGINT NOT NULL REFERENCES mlcubes (id),
    metadata TEXT NOT NULL DEFAULT '{}',
    state TEXT NOT NULL DEFAULT 'DEVELOPMENT',
    is_valid INTEGER NOT NULL DEFAULT 1,
    is_active INTEGER NOT NULL DEFAULT 1,
    approval_status TEXT NOT NULL DEFAULT 'PENDING',
    dataset_auto_approval_allow_list TEXT NOT NULL DEFAULT '[]',
    dataset_auto_approval_mode TEXT NOT NULL DEFAULT 'NEVER',
    model_auto_approval_allow_list TEXT NOT NULL DEFAULT '[]',
    model_auto_approval_mode TEXT NOT NULL DEFAULT 'NEVER',
    user_metadata TEXT NOT NULL DEFAULT '{}',
    approved_at TEXT,
    created_at TEXT NOT NULL,
    modified_at TEXT NOT NULL
);
CREATE INDEX benchmarks_owner ON benchmarks (owner);

CREATE TABLE datasets (
    id BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    location TEXT NOT NULL DEFAULT '',
    owner BIGINT NOT NULL REFERENCES users (id),
    input_data_hash TEXT NOT NULL,
    generated_uid TEXT NOT NULL,
    split_seed BIGINT NOT NULL DEFAULT 0,
    data_preparation_mlcube BIGINT NOT NULL REFERENCES mlcubes (id),
    is_valid INTEGER NOT NULL DEFAULT 1,
    submitted_as_prepared INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT 'DEVELOPMENT',
    generated_metadata TEXT NOT NULL DEFAULT '{}',
    user_metadata TEXT NOT NULL DEFAULT '{}',
    report TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL,
    modified_at TEXT NOT NULL
);
CREATE INDEX datasets_owner ON datasets (owner);
-- MedPerf's unique_operational_dataset_output_hash: unique among OPERATION datasets only.
CREATE UNIQUE INDEX datasets_operational_generated_uid ON datasets (generated_uid) WHERE state = 'OPERATION';

CREATE TABLE benchmark_datasets (
    id BIGINT PRIMARY KEY,
    dataset BIGINT NOT NULL REFERENCES datasets (id),
    benchmark BIGINT NOT NULL REFERENCES benchmarks (id),
    initiated_by BIGINT NOT NULL REFERENCES users (id),
    metadata TEXT NOT NULL DEFAULT '{}',
    approval_status TEXT NOT NULL DEFAULT 'PENDING',
    approved_at TEXT,
    created_at TEXT NOT NULL,
    modified_at TEXT NOT NULL
);
CREATE INDEX benchmark_datasets_pair ON benchmark_datasets (dataset, benchmark, created_at);
CREATE INDEX benchmark_datasets_benchmark ON benchmark_datasets (benchmark);

CREATE TABLE benchmark_models (
    id BIGINT PRIMARY KEY,
    model BIGINT NOT NULL REFERENCES models (id),
    benchmark BIGINT NOT NULL REFERENCES benchmarks (id),
    initiated_by BIGINT NOT NULL REFERENCES users (id),
    metadata TEXT NOT NULL DEFAULT '{}',
    approval_status TEXT NOT NULL DEFAULT 'PENDING',
    priority BIGINT NOT NULL DEFAULT 0,
    approved_at TEXT,
    created_at TEXT NOT NULL,
    modified_at TEXT NOT NULL
);
CREATE INDEX benchmark_models_pair ON benchmark_models (model, benchmark, created_at);
CREATE INDEX benchmark_models_benchmark ON benchmark_models (benchmark);

CREATE TABLE results (
    id BIGINT PRIMARY KEY,
    name TEXT NOT NULL DEFAULT '',
    owner BIGINT NOT NULL REFERENCES users (id),
    benchmark BIGINT NOT NULL REFERENCES benchmarks (id),
    model BIGINT NOT NULL REFERENCES models (id),
    dataset BIGINT NOT NULL REFERENCES datasets (id),
    results TEXT NOT NULL DEFAULT '{}',
    metadata TEXT NOT NULL DEFAULT '{}',
    user_metadata TEXT NOT NULL DEFAULT '{}',
    model_report TEXT NOT NULL DEFAULT '{}',
    evaluation_report TEXT NOT NULL DEFAULT '{}',
    finalized INTEGER NOT NULL DEFAULT 0,
    finalized_at TEXT,
    approval_status TEXT NOT NULL DEFAULT 'PENDING',
    approved_at TEXT,
    is_valid INTEGER NOT NULL DEFAULT 1,
    created_at TEXT NOT NULL,
    modified_at TEXT NOT NULL
);
CREATE INDEX results_owner ON results (owner, id);
CREATE INDEX results_benchmark ON results (benchmark, id);
CREATE INDEX results_dataset ON results (dataset);
