//! Saturation: the batches whose backend's queue is full. A request that finds the queue full
//! goes back to the store unsent ([`turn_away`]), and claims leave its batch out until the queue
//! has room again, so the dispatch slots go to other backends' requests meanwhile.

use batchd_backends::limits::Concurrency;
use batchd_store::WorkItem;

use crate::recorder::Report;
use crate::{Shared, lock};

/// The batches claims leave out: those that met a full queue at a backend whose queue has no
/// room yet. The others are forgotten here, so their next claim serves them again.
pub(crate) fn saturated_batches(shared: &Shared) -> Vec<i64> {
    let mut saturated = lock(&shared.saturated);
    saturated.retain(|_, &mut index| !has_room(shared, index));
    saturated.keys().copied().collect()
}

/// Whether requests of this batch are to go back to the store rather than to a task.
pub(crate) fn skipped(shared: &Shared, batch_key: i64) -> bool {
    lock(&shared.saturated)
        .get(&batch_key)
        .is_some_and(|&index| !has_room(shared, index))
}

/// Whether the backend at `index` can take a real group of new requests (see
/// `Concurrency::has_room`).
fn has_room(shared: &Shared, index: usize) -> bool {
    shared.backends.backends()[index]
        .concurrency
        .as_ref()
        .is_none_or(|limit| limit.has_room())
}

/// Turns a request away from a backend whose queue is full: it goes back to the store unsent,
/// and its batch is not claimed again until the queue has room, which leaves the dispatch slots
/// to other backends' requests.
pub(crate) fn turn_away(shared: &Shared, item: &WorkItem, index: usize) -> Report {
    lock(&shared.saturated).insert(item.batch_key, index);
    // The queue may have made room between the refusal and the insert, with nobody left to say.
    if has_room(shared, index) {
        shared.work.notify_one();
    }
    Report::Release(item.slot())
}

/// A request took a slot at a backend, so its queue just shortened: batches skipped for it may
/// be claimed again.
pub(crate) fn queue_shortened(shared: &Shared, limit: &Concurrency) {
    if limit.has_room() && !lock(&shared.saturated).is_empty() {
        shared.work.notify_one();
    }
}
