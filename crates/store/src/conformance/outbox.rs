//! The contract's webhook outbox cases: every way a batch ends writes exactly one outbox row, in
//! the transaction that ends it, and nothing else does.

use super::*;

const OUTBOX: &str = "webhook_outbox";

/// Its last answer, a drained cancel (by maintenance and by the release of its last claim) and
/// expiry each leave one row per ended batch; creating, canceling, answering part of a batch and
/// ending it again leave none; the rows survive a restart.
pub async fn every_end_writes_one_outbox_row<H: Harness>(h: &H) {
    let store = h.open().await;
    // The last answer.
    let completed = create(&store, 2).await;
    let items = claim(&store, 10, at(1)).await;
    store
        .record(&answers(&items[..1], Outcome::Succeeded), at(2))
        .await
        .unwrap();
    assert_eq!(h.rows(&store, OUTBOX).await, 0, "not ended yet");
    let ended = store
        .record(&answers(&items[1..], Outcome::Errored), at(3))
        .await
        .unwrap();
    assert_eq!(ended.batches.len(), 1);
    assert_eq!(h.rows(&store, OUTBOX).await, 1);

    // A cancel drained by maintenance.
    let canceled = create(&store, 3).await;
    store.cancel_batch(WS, &canceled.id, at(4)).await.unwrap();
    assert_eq!(h.rows(&store, OUTBOX).await, 1, "canceling is not ended");
    store.finish_due(at(5)).await.unwrap();
    assert_eq!(get(&store, &canceled).await.status, ProcessingStatus::Ended);
    assert_eq!(h.rows(&store, OUTBOX).await, 2);

    // A cancel drained by the release of its last claim.
    let released = create(&store, 2).await;
    let items = claim(&store, 10, at(6)).await;
    store.cancel_batch(WS, &released.id, at(7)).await.unwrap();
    let slots: Vec<Slot> = items.iter().map(WorkItem::slot).collect();
    store.release(&slots).await.unwrap();
    store.finish_due(at(8)).await.unwrap();
    assert_eq!(get(&store, &released).await.status, ProcessingStatus::Ended);
    assert_eq!(h.rows(&store, OUTBOX).await, 3);

    // Expiry.
    let expiring = create(&store, 2).await;
    store.finish_due(at(DAY + 1)).await.unwrap();
    assert_eq!(get(&store, &expiring).await.status, ProcessingStatus::Ended);
    assert_eq!(h.rows(&store, OUTBOX).await, 4);

    // Nothing ends twice, and nothing else writes.
    store.finish_due(at(2 * DAY)).await.unwrap();
    for b in [&completed, &canceled] {
        store.cancel_batch(WS, &b.id, at(2 * DAY)).await.unwrap();
    }
    store.delete_batch(WS, &completed.id).await.unwrap();
    assert_eq!(h.rows(&store, OUTBOX).await, 4);

    h.close(store).await;
    let store = h.open().await;
    assert_eq!(h.rows(&store, OUTBOX).await, 4, "durable");
}
