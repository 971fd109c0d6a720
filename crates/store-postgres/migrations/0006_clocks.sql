-- Test mode's virtual clocks: a workspace's time runs `offset_micros` ahead of real time. A
-- workspace without a row runs on real time, so a server that never uses test mode has none.
-- Offsets only grow; a reset of the workspace deletes its row.
CREATE TABLE clocks (
    workspace     TEXT   PRIMARY KEY,
    offset_micros BIGINT NOT NULL
);
