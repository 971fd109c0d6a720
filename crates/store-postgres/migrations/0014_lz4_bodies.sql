-- The large values (request params, result bodies, file pieces) are compressed with lz4 rather
-- than PostgreSQL's default pglz. A row over ~2 KB (a 2.5 KB params or result body is) is
-- compressed by the toaster when it is written and decompressed when it is read, so every
-- request costs one pglz compression at create and one at record, and a decompression at claim
-- and at download. In a profile of the PostgreSQL processes during the bench's PostgreSQL rows
-- (`perf record -a -e cpu-clock` over the 0 ms rows, 50,000 requests, 1-3 batchd processes,
-- their creates included) `pglz_compress` was the largest single symbol: 14 % of PostgreSQL's
-- samples. lz4 compresses several times faster for a similar size on text like this. A column's compression applies to
-- values written from now on: existing rows stay as they are and both kinds read back alike.
--
-- lz4 needs a server built with it (PostgreSQL 14 or later, `--with-lz4`, as the Debian and
-- upstream packages are); on one without it the columns keep pglz and nothing else changes.
DO $$
BEGIN
    EXECUTE 'ALTER TABLE requests ALTER COLUMN params SET COMPRESSION lz4';
    EXECUTE 'ALTER TABLE results ALTER COLUMN body SET COMPRESSION lz4';
    EXECUTE 'ALTER TABLE file_chunks ALTER COLUMN data SET COMPRESSION lz4';
EXCEPTION WHEN feature_not_supported OR syntax_error THEN
    RAISE NOTICE 'lz4 compression not available: large values keep pglz';
END
$$;
