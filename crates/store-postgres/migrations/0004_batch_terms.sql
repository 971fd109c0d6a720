-- What a batch's create said that applies to each of its requests besides its betas: the
-- `anthropic-version` they are validated under and sent upstream with, and the user profile they
-- are attributed to. Batches created before these were kept were all created under 2023-06-01.
ALTER TABLE batches ADD COLUMN api_version TEXT NOT NULL DEFAULT '2023-06-01';
ALTER TABLE batches ADD COLUMN user_profile_id TEXT;
