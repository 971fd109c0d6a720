//! The OpenAI surface's files, engine-neutral: the listing statement every engine runs (in its
//! own placeholder syntax), the page it makes, and the checks of a draft's pieces and commit.

use crate::{FILE_CHUNK_BYTES, FilePage, Result, StoreError, StoredFile, file_columns, misuse};

/// What [`FileStore::list_files`](crate::FileStore::list_files) was asked for, as far as the
/// statement's text depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listing {
    pub purpose: bool,
    pub after: bool,
    pub order_desc: bool,
}

/// Where an `after` cursor stands: a visible file of the workspace, by id, or the tombstone of
/// one deleted or expired since (so paging goes on past a file deleted meanwhile).
/// `$1` id, `$2` workspace, in the engine's placeholder syntax (see [`list_sql`]).
pub fn cursor_sql(placeholder: impl Fn(usize) -> String) -> String {
    let (id, workspace) = (placeholder(1), placeholder(2));
    format!(
        "SELECT created_at, key FROM files WHERE id = {id} AND workspace = {workspace} \
         AND state = 1 UNION ALL SELECT created_at, key FROM file_tombstones \
         WHERE id = {id} AND workspace = {workspace} LIMIT 1"
    )
}

/// Records the tombstones of the visible files `filter` selects, before they stop being
/// visible (in the same transaction): `filter` is the rest of a `WHERE` on `files` after
/// `state = 1 AND `, in the engine's syntax. A file with a tombstone already keeps it.
pub fn tombstones_sql(filter: &str) -> String {
    format!(
        "INSERT INTO file_tombstones (id, workspace, created_at, key) \
         SELECT id, workspace, created_at, key FROM files WHERE state = 1 AND {filter} \
         ON CONFLICT (id) DO NOTHING"
    )
}

/// The listing statement. Its parameters, in order: the workspace, the purpose (if
/// `listing.purpose`), the cursor's `created_at` and `key` (if `listing.after`), then the rows to
/// read ([`crate::paging::rows_to_read`]). `placeholder(n)` writes the `n`th parameter (`?n`,
/// `$n`). `state = 1` is written out so that the `files_list` and `files_list_purpose` partial
/// indexes match.
pub fn list_sql(listing: Listing, placeholder: impl Fn(usize) -> String) -> String {
    let mut n = 0;
    let mut next = || {
        n += 1;
        placeholder(n)
    };
    let mut sql = format!(
        concat!(
            "SELECT ",
            file_columns!(),
            " FROM files WHERE workspace = {} AND state = 1"
        ),
        next()
    );
    if listing.purpose {
        sql.push_str(&format!(" AND purpose = {}", next()));
    }
    let (cmp, order) = if listing.order_desc {
        ("<", "DESC")
    } else {
        (">", "ASC")
    };
    if listing.after {
        let (created_at, key) = (next(), next());
        sql.push_str(&format!(
            " AND (created_at, key) {cmp} ({created_at}, {key})"
        ));
    }
    sql.push_str(&format!(
        " ORDER BY created_at {order}, key {order} LIMIT {}",
        next()
    ));
    sql
}

/// The page from the rows read (at most `limit` + 1 of them), each decoded by `file`.
pub fn page<R>(
    rows: &[R],
    limit: u32,
    file: impl Fn(&R) -> Result<StoredFile>,
) -> Result<FilePage> {
    Ok(FilePage {
        has_more: rows.len() as u64 > u64::from(limit),
        files: rows
            .iter()
            .take(limit as usize)
            .map(file)
            .collect::<Result<Vec<_>>>()?,
    })
}

/// A piece [`FileStore::append_file`](crate::FileStore::append_file) may store.
pub fn check_piece(len: usize) -> Result<()> {
    if len > FILE_CHUNK_BYTES {
        return Err(misuse(format!(
            "a file piece holds at most {FILE_CHUNK_BYTES} bytes, not {len}"
        )));
    }
    Ok(())
}

/// What a draft holds, read when it is committed: its pieces, the highest `seq` (−1 when it has
/// none) and their bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pieces {
    pub count: i64,
    pub last_seq: i64,
    pub bytes: i64,
}

/// A commit of `bytes` is refused unless the draft holds pieces 0 to n−1 of exactly that many
/// bytes: a file missing a piece would download corrupt.
pub fn check_commit(draft_key: i64, pieces: Pieces, bytes: u64) -> Result<()> {
    let whole = pieces.count == pieces.last_seq + 1;
    if !whole || u64::try_from(pieces.bytes).ok() != Some(bytes) {
        return Err(misuse(format!(
            "file draft {draft_key} holds {} pieces up to seq {} of {} bytes, committed as {bytes} bytes",
            pieces.count, pieces.last_seq, pieces.bytes
        )));
    }
    Ok(())
}

/// A statement that changes one file draft found no open draft to change.
pub fn not_a_draft(key: i64) -> StoreError {
    crate::draft_gone(format!("file {key} is not an open draft"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(n: usize) -> String {
        format!("?{n}")
    }

    #[test]
    fn listing_numbers_its_parameters_in_binding_order() {
        let sql = list_sql(
            Listing {
                purpose: true,
                after: true,
                order_desc: true,
            },
            q,
        );
        assert!(
            sql.ends_with(
                "WHERE workspace = ?1 AND state = 1 AND purpose = ?2 \
                 AND (created_at, key) < (?3, ?4) ORDER BY created_at DESC, key DESC LIMIT ?5"
            ),
            "{sql}"
        );
        let sql = list_sql(
            Listing {
                purpose: false,
                after: false,
                order_desc: false,
            },
            |n| format!("${n}"),
        );
        assert!(
            sql.ends_with(
                "WHERE workspace = $1 AND state = 1 ORDER BY created_at ASC, key ASC LIMIT $2"
            ),
            "{sql}"
        );
    }

    #[test]
    fn a_commit_must_name_every_piece_and_byte() {
        let whole = Pieces {
            count: 3,
            last_seq: 2,
            bytes: 10,
        };
        assert!(check_commit(1, whole, 10).is_ok());
        assert!(check_commit(1, whole, 11).is_err());
        let gap = Pieces {
            last_seq: 3,
            ..whole
        };
        assert!(check_commit(1, gap, 10).is_err());
        let empty = Pieces {
            count: 0,
            last_seq: -1,
            bytes: 0,
        };
        assert!(check_commit(1, empty, 0).is_ok());
        assert!(check_piece(FILE_CHUNK_BYTES).is_ok());
        assert!(check_piece(FILE_CHUNK_BYTES + 1).is_err());
    }
}
