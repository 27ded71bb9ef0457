-- As migrations/sqlite/0002_access.sql, for PostgreSQL. Access control: users, organisations, teams, grants, robot accounts, personal access tokens,
-- repository visibility, the audit log and the token signing key.

CREATE TABLE users (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name           TEXT COLLATE "C" NOT NULL UNIQUE,
    password_hash  TEXT NOT NULL,
    site_admin     BIGINT NOT NULL DEFAULT 0,
    disabled       BIGINT NOT NULL DEFAULT 0,
    created_at     BIGINT NOT NULL
);

CREATE TABLE organisations (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        TEXT COLLATE "C" NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL
);

CREATE TABLE teams (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id      BIGINT NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    UNIQUE (org_id, name)
);

CREATE TABLE team_members (
    team_id  BIGINT NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    user_id  BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    PRIMARY KEY (team_id, user_id)
);
CREATE INDEX team_members_user ON team_members(user_id);

CREATE TABLE robots (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id       BIGINT NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    -- The login name, `<org>+<name>`.
    name         TEXT COLLATE "C" NOT NULL UNIQUE,
    secret_hash  TEXT NOT NULL,
    expires_at   BIGINT,
    revoked_at   BIGINT,
    created_at   BIGINT NOT NULL
);

-- A role granted to a user, team or robot on a whole organisation (repo = '') or on one
-- repository of it. `owner` administers the organisation itself.
CREATE TABLE grants (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subject_kind  TEXT NOT NULL CHECK (subject_kind IN ('user', 'team', 'robot')),
    subject_id    BIGINT NOT NULL,
    org_id        BIGINT NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    repo          TEXT COLLATE "C" NOT NULL DEFAULT '',
    role          TEXT NOT NULL CHECK (role IN ('read', 'write', 'admin', 'owner')),
    created_at    BIGINT NOT NULL,
    UNIQUE (subject_kind, subject_id, org_id, repo)
);
CREATE INDEX grants_org ON grants(org_id, repo);

CREATE TABLE access_tokens (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id       BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    secret_hash   TEXT NOT NULL UNIQUE,
    max_role      TEXT NOT NULL CHECK (max_role IN ('read', 'write', 'admin')),
    expires_at    BIGINT,
    revoked_at    BIGINT,
    created_at    BIGINT NOT NULL,
    last_used_at  BIGINT
);

CREATE TABLE repo_settings (
    name         TEXT COLLATE "C" PRIMARY KEY,
    public       BIGINT NOT NULL DEFAULT 0,
    description  TEXT
);

CREATE TABLE audit_log (
    id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at      BIGINT NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    target  TEXT NOT NULL,
    source  TEXT NOT NULL,
    detail  TEXT
);
CREATE INDEX audit_log_at ON audit_log(at);
CREATE INDEX audit_log_actor ON audit_log(actor, at);
CREATE INDEX audit_log_target ON audit_log(target, at);

CREATE TABLE signing_keys (
    kid          TEXT PRIMARY KEY,
    private_pem  TEXT NOT NULL,
    created_at   BIGINT NOT NULL
);
