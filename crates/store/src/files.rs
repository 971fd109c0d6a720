//! The OpenAI surface's files, engine-neutral: the listing statement every engine runs (in its
//! own placeholder syntax), the page it makes, the checks of a draft's pieces and commit, and
//! the claim's reading of OpenAI request bodies back out of their input file ([`fill_bodies`]).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use crate::{
    BodySource, FILE_CHUNK_BYTES, FilePage, Result, StoreError, StoredFile, WorkItem, file_columns,
    misuse,
};

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

/// The [`BodySource`] of a request row from its three nullable columns (file key, offset,
/// length): `None` when the row holds its body in `params`.
pub fn source_of(
    file: Option<i64>,
    at: Option<i64>,
    len: Option<i64>,
) -> Result<Option<BodySource>> {
    match (file, at, len) {
        (None, None, None) => Ok(None),
        (Some(file_key), Some(at), Some(len)) => match (u64::try_from(at), u32::try_from(len)) {
            (Ok(at), Ok(len)) if len > 0 => Ok(Some(BodySource { file_key, at, len })),
            _ => Err(StoreError::Corrupt(format!(
                "request body source {file_key}:{at}+{len}"
            ))),
        },
        _ => Err(StoreError::Corrupt(format!(
            "request body source partly set: {file:?} {at:?} {len:?}"
        ))),
    }
}

/// Pieces of a committed file [`fill_bodies`] read lately, kept between claims (each engine's
/// store holds one). A dispatcher refilling its free slots claims a few dozen requests at a
/// time, each group's bodies mostly in the piece the last group read: read again each time,
/// the 1 MiB piece cost the OpenAI dispatch row at 50 ms upstream about 15 µs of CPU per
/// request more than bodies copied into the request rows (`batchd-bench --rows
/// openai-dispatch --requests 20000`, release build, SQLite). A committed file's pieces never
/// change and file keys are never reused (both engines), so a piece kept is never stale.
#[derive(Debug, Default)]
pub struct PieceCache {
    pieces: Mutex<VecDeque<(PieceAt, Piece)>>,
}

/// A piece's place: its file's key and its `seq`.
type PieceAt = (i64, u64);
/// A piece's bytes, shared by the cache and the claim reading them.
type Piece = Arc<Vec<u8>>;

impl PieceCache {
    /// Pieces kept: a few batches served in turn each have their current piece at hand.
    pub const PIECES: usize = 4;

    fn get(&self, at: PieceAt) -> Option<Piece> {
        let pieces = self.pieces.lock().unwrap_or_else(PoisonError::into_inner);
        pieces
            .iter()
            .find(|(k, _)| *k == at)
            .map(|(_, p)| Arc::clone(p))
    }

    fn put(&self, at: PieceAt, piece: Piece) {
        let mut pieces = self.pieces.lock().unwrap_or_else(PoisonError::into_inner);
        if pieces.len() == Self::PIECES {
            pieces.pop_front();
        }
        pieces.push_back((at, piece));
    }
}

/// Fills the `params` of the claimed `items` whose `sources` (same order) point into a stored
/// file, reading each piece they need once (`read(file_key, seq)`, the engine's
/// [`FileStore::file_chunk`](crate::FileStore::file_chunk)) unless `cache` holds it, in file
/// and piece order, so that memory holds one piece besides the bodies and the cache. Items without a source keep their `params`.
///
/// Offsets map to pieces by arithmetic: every piece of an uploaded file but the last is
/// [`FILE_CHUNK_BYTES`] long. A missing piece, a body past a piece's end, a body that is not
/// an object, or bytes that are not UTF-8 are [`StoreError::Corrupt`]: the create stored only
/// lines that parsed as JSON (UTF-8 by then), and the purge keeps the pieces until the batch
/// is finalized, so none of these happens to a store used as the contract says.
pub async fn fill_bodies<F, Fut>(
    items: &mut [WorkItem],
    sources: &[Option<BodySource>],
    cache: &PieceCache,
    mut read: F,
) -> Result<()>
where
    F: FnMut(i64, u32) -> Fut,
    Fut: std::future::Future<Output = Result<Option<Vec<u8>>>>,
{
    const PIECE: u64 = FILE_CHUNK_BYTES as u64;
    // (file, piece, item, from, to): the part of an item's body in one piece.
    let mut parts: Vec<(i64, u64, usize, usize, usize)> = Vec::new();
    let mut bodies: Vec<Option<Vec<u8>>> = vec![None; items.len()];
    for (i, source) in sources.iter().enumerate().take(items.len()) {
        let Some(src) = source else { continue };
        bodies[i] = Some(Vec::with_capacity(src.len as usize));
        let end = src.at + u64::from(src.len);
        let mut pos = src.at;
        while pos < end {
            let seq = pos / PIECE;
            let start = seq * PIECE;
            let to = end.min(start + PIECE) - start;
            parts.push((src.file_key, seq, i, (pos - start) as usize, to as usize));
            pos = start + to;
        }
    }
    // By item last too, so that each body's parts are appended in order.
    parts.sort_unstable();
    let mut piece: Option<(PieceAt, Piece)> = None;
    for (file_key, seq, i, from, to) in parts {
        if piece.as_ref().is_none_or(|(at, _)| *at != (file_key, seq)) {
            let bytes = match cache.get((file_key, seq)) {
                Some(bytes) => bytes,
                None => {
                    let n = u32::try_from(seq).map_err(|_| {
                        StoreError::Corrupt(format!("piece {seq} of file {file_key}"))
                    })?;
                    let bytes = Arc::new(read(file_key, n).await?.ok_or_else(|| {
                        StoreError::Corrupt(format!("piece {seq} of file {file_key} is gone"))
                    })?);
                    cache.put((file_key, seq), Arc::clone(&bytes));
                    bytes
                }
            };
            piece = Some(((file_key, seq), bytes));
        }
        let bytes = &piece.as_ref().expect("read above").1;
        let part = bytes.get(from..to).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "piece {seq} of file {file_key} holds {} bytes, a body needs {from}..{to}",
                bytes.len()
            ))
        })?;
        bodies[i]
            .as_mut()
            .expect("set above")
            .extend_from_slice(part);
    }
    for (item, body) in items.iter_mut().zip(bodies) {
        let Some(body) = body else { continue };
        if body.first() != Some(&b'{') || body.last() != Some(&b'}') {
            return Err(StoreError::Corrupt(format!(
                "the body of request {} of batch {} is not an object in its file",
                item.index, item.batch_key
            )));
        }
        item.params = String::from_utf8(body).map_err(|_| {
            StoreError::Corrupt(format!(
                "the body of request {} of batch {} is not UTF-8",
                item.index, item.batch_key
            ))
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a future whose every await is ready (the fake piece reader's).
    fn ready<F: std::future::Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(out) => out,
            std::task::Poll::Pending => panic!("the fake reader is always ready"),
        }
    }

    /// A file of `pieces` (by seq), the reads it served counted.
    fn fill(
        items: &mut [WorkItem],
        sources: &[Option<BodySource>],
        pieces: &[Vec<u8>],
    ) -> (Result<()>, usize) {
        fill_with(items, sources, pieces, &PieceCache::default())
    }

    fn fill_with(
        items: &mut [WorkItem],
        sources: &[Option<BodySource>],
        pieces: &[Vec<u8>],
        cache: &PieceCache,
    ) -> (Result<()>, usize) {
        let mut reads = 0;
        let out = ready(fill_bodies(items, sources, cache, |_, seq| {
            reads += 1;
            std::future::ready(Ok(pieces.get(seq as usize).cloned()))
        }));
        (out, reads)
    }

    fn item(index: u32) -> WorkItem {
        let mut item = crate::tests::work_item(index);
        item.params = String::new();
        item
    }

    #[test]
    fn bodies_are_cut_from_their_pieces_even_across_two() {
        let size = FILE_CHUNK_BYTES;
        let mut file = vec![b' '; size * 2 + 10];
        let a = br#"{"a":1}"#;
        let b = br#"{"spans":"two pieces"}"#;
        file[3..3 + a.len()].copy_from_slice(a);
        let b_at = size - 5;
        file[b_at..b_at + b.len()].copy_from_slice(b);
        let pieces: Vec<Vec<u8>> = file.chunks(size).map(<[u8]>::to_vec).collect();
        let mut items = vec![item(0), item(1), item(2)];
        items[2].params = "{\"kept\":true}".to_owned();
        let sources = [
            Some(BodySource {
                file_key: 7,
                at: 3,
                len: a.len() as u32,
            }),
            Some(BodySource {
                file_key: 7,
                at: b_at as u64,
                len: b.len() as u32,
            }),
            None,
        ];
        let (out, reads) = fill(&mut items, &sources, &pieces);
        out.unwrap();
        assert_eq!(items[0].params, r#"{"a":1}"#);
        assert_eq!(items[1].params, r#"{"spans":"two pieces"}"#);
        assert_eq!(items[2].params, r#"{"kept":true}"#);
        assert_eq!(reads, 2, "each piece is read once");
    }

    #[test]
    fn the_next_claims_take_their_pieces_from_the_cache() {
        let pieces: Vec<Vec<u8>> = (0..6)
            .map(|n| format!("{{\"p\":{n}}}").into_bytes())
            .collect();
        let source = |seq: u64| {
            [Some(BodySource {
                file_key: 1,
                at: seq * FILE_CHUNK_BYTES as u64,
                len: 7,
            })]
        };
        let cache = PieceCache::default();
        let mut items = vec![item(0)];
        assert_eq!(fill_with(&mut items, &source(0), &pieces, &cache).1, 1);
        assert_eq!(fill_with(&mut items, &source(0), &pieces, &cache).1, 0);
        assert_eq!(items[0].params, r#"{"p":0}"#);
        // Only the last few stay.
        for seq in 1..=PieceCache::PIECES as u64 {
            assert_eq!(fill_with(&mut items, &source(seq), &pieces, &cache).1, 1);
        }
        assert_eq!(fill_with(&mut items, &source(0), &pieces, &cache).1, 1);
    }

    #[test]
    fn a_body_that_is_gone_or_not_utf8_is_corrupt() {
        let source = |at, len| {
            [Some(BodySource {
                file_key: 1,
                at,
                len,
            })]
        };
        let mut items = vec![item(0)];
        let (out, _) = fill(&mut items, &source(0, 4), &[]);
        assert!(matches!(out, Err(StoreError::Corrupt(_))), "{out:?}");
        let (out, _) = fill(&mut items, &source(0, 4), &[b"{\xff\xfe}".to_vec()]);
        assert!(matches!(out, Err(StoreError::Corrupt(_))), "{out:?}");
        // A short piece that is not the last shifts every offset after it: caught, not sliced.
        let (out, _) = fill(&mut items, &source(2, 9), &[b"{}".to_vec()]);
        assert!(matches!(out, Err(StoreError::Corrupt(_))), "{out:?}");
        assert!(source_of(Some(1), None, Some(2)).is_err());
        assert_eq!(source_of(None, None, None).unwrap(), None);
    }

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
