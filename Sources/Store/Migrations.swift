/// One named, ordered schema change, applied once inside a transaction and recorded in `schema_migrations`.
struct Migration: Sendable {
    let version: Int
    let name: String
    let sql: String
}

extension Migration {
    /// Every migration, oldest first. Append only; never edit one that has shipped.
    static let all: [Migration] = [
        Migration(
            version: 1,
            name: "create operations",
            sql: """
                CREATE TABLE operations (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    requested_at INTEGER NOT NULL,
                    finished_at INTEGER,
                    duration_us INTEGER,
                    source TEXT NOT NULL,
                    requester TEXT,
                    client_address TEXT,
                    target TEXT NOT NULL,
                    domain_name TEXT,
                    domain_uuid TEXT,
                    action TEXT NOT NULL,
                    state TEXT NOT NULL CHECK (state IN ('started', 'finished', 'interrupted')),
                    result TEXT CHECK (result IN ('success', 'failure', 'timed_out', 'refused', 'interrupted')),
                    power_state TEXT,
                    error_code TEXT,
                    message TEXT,
                    owner_pid INTEGER NOT NULL,
                    owner_start INTEGER NOT NULL
                );
                CREATE INDEX operations_by_time ON operations (requested_at DESC, id DESC);
                CREATE INDEX operations_by_domain_name ON operations (domain_name, requested_at DESC, id DESC);
                CREATE INDEX operations_by_domain_uuid ON operations (domain_uuid, requested_at DESC, id DESC);
                CREATE INDEX operations_by_action ON operations (action, requested_at DESC, id DESC);
                CREATE INDEX operations_by_source ON operations (source, requested_at DESC, id DESC);
                CREATE INDEX operations_by_result ON operations (result, requested_at DESC, id DESC);
                CREATE INDEX operations_by_requester ON operations (requester, requested_at DESC, id DESC);
                CREATE INDEX operations_started ON operations (owner_pid, owner_start) WHERE state = 'started';
                """
        ),
        Migration(
            version: 2,
            name: "create tokens",
            sql: """
                CREATE TABLE tokens (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    name TEXT NOT NULL UNIQUE,
                    public_id TEXT NOT NULL UNIQUE,
                    secret_hash TEXT NOT NULL,
                    scope TEXT NOT NULL CHECK (scope IN ('read', 'fence')),
                    domain_patterns TEXT NOT NULL,
                    created_at INTEGER NOT NULL,
                    revoked_at INTEGER
                );
                """
        ),
        Migration(
            version: 3,
            name: "index operations by domain and action",
            sql: """
                CREATE INDEX operations_by_domain_action
                    ON operations (domain_name, action, requested_at DESC, id DESC);
                """
        ),
        Migration(
            version: 4,
            name: "create write probe",
            sql: """
                CREATE TABLE write_probe (
                    id INTEGER PRIMARY KEY CHECK (id = 1),
                    written_at INTEGER NOT NULL
                );
                """
        ),
        Migration(
            version: 5,
            name: "tokens name the domain they belong to",
            sql: """
                ALTER TABLE tokens ADD COLUMN from_domain TEXT;
                """
        ),
        Migration(
            version: 6,
            name: "token generation",
            // Bumped by the same statement (so in the same transaction) as every change of a token, whoever
            // makes it (the daemon, a `fencegate token` command, an older fencegate): a reader that finds the
            // generation unchanged knows its copy of the tokens is current (`TokenReader`).
            sql: """
                CREATE TABLE token_generation (
                    id INTEGER PRIMARY KEY CHECK (id = 1),
                    generation INTEGER NOT NULL
                );
                INSERT INTO token_generation (id, generation) VALUES (1, 1);
                CREATE TRIGGER token_inserted AFTER INSERT ON tokens
                BEGIN UPDATE token_generation SET generation = generation + 1; END;
                CREATE TRIGGER token_updated AFTER UPDATE ON tokens
                BEGIN UPDATE token_generation SET generation = generation + 1; END;
                CREATE TRIGGER token_deleted AFTER DELETE ON tokens
                BEGIN UPDATE token_generation SET generation = generation + 1; END;
                """
        ),
        Migration(
            version: 7,
            name: "space kept for fences",
            // One row whose pages the daemon frees for fences' rows when the filesystem runs low
            // (`AuditSpaceReserve`); filled by the daemon, not here, so that a migration never needs the space.
            sql: """
                CREATE TABLE reserve (
                    id INTEGER PRIMARY KEY CHECK (id = 1),
                    filler BLOB NOT NULL
                );
                """
        ),
    ]
}
