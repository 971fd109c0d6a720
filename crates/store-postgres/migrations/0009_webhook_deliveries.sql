-- Completion webhooks' deliveries: one row per (outbox event, endpoint subscribed when the event
-- was fanned out). `event_id` is fixed at fan-out, so every retry carries the same
-- `webhook-id`. `state`: 0 pending, 1 delivered, 2 failed. `created_at` is the fan-out time, the
-- origin of the retry schedule; `event_at` the batch's `ended_at`. A lease (`lease_owner`,
-- `lease_until`) keeps one worker on a delivery at a time.
CREATE TABLE webhook_deliveries (
    key             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id        TEXT    NOT NULL UNIQUE,
    endpoint_key    BIGINT  NOT NULL,
    batch_key       BIGINT  NOT NULL,
    event_at        BIGINT  NOT NULL,
    created_at      BIGINT  NOT NULL,
    state           BIGINT  NOT NULL DEFAULT 0,
    attempts        BIGINT  NOT NULL DEFAULT 0,
    next_attempt_at BIGINT  NOT NULL,
    lease_owner     TEXT,
    lease_until     BIGINT,
    last_status     BIGINT,
    last_error      TEXT,
    last_attempt_at BIGINT,
    UNIQUE (batch_key, endpoint_key)
);

-- Due deliveries: only pending ones are indexed, so delivered history costs the claim nothing.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE state = 0;
-- An endpoint's recent deliveries.
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_key, key);

-- When the endpoint's current run of failed attempts began (NULL after a success): five days
-- of it disable the endpoint.
ALTER TABLE webhook_endpoints ADD COLUMN failing_since BIGINT;
