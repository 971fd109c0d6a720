-- Webhook endpoints, per workspace. `secret` is kept as it is, since it must sign;
-- `previous_secret` stays valid until `previous_until` after a rotation. `events` is a JSON
-- array of event types. A deleted endpoint keeps its row (deleted = 1) so its id is never reused.
CREATE TABLE webhook_endpoints (
    key             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT    NOT NULL UNIQUE,
    workspace       TEXT    NOT NULL,
    url             TEXT    NOT NULL,
    events          TEXT    NOT NULL,
    description     TEXT,
    secret          TEXT    NOT NULL,
    previous_secret TEXT,
    previous_until  INTEGER,
    created_at      INTEGER NOT NULL,
    disabled_at     INTEGER,
    deleted         INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE INDEX webhook_endpoints_workspace ON webhook_endpoints (workspace, key) WHERE deleted = 0;
