-- The request's custom_id beside its result, so that downloading a batch whose every request has
-- a result reads only the results table: joining the requests read their pages too, each mostly
-- params, which doubled what a download read. NULL in rows recorded before this migration; the
-- download then looks it up in requests.
ALTER TABLE results ADD COLUMN custom_id TEXT;
