//! Group commit: reports from every stream queue here and are committed together, one
//! transaction per batch, so `synchronous=FULL` durability costs one fsync per batch instead of
//! one per report. Each submitter learns its own outcome only after the batch is durable; that
//! is the moment the stream may acknowledge. A report the store refuses fails alone (its
//! submitter gets `StoreError::Rejected`, the others in the batch are committed); a store that
//! fails as a whole fails every submitter of the batch with `Unavailable`, nothing
//! acknowledged. Newly stored reports then go on to the incident stage.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use crate::events::BatchCommitted;
use crate::incidents::EvaluationQueue;
use crate::store::{CommitOutcome, ReportRecord, Store, StoreError, StoreResult};

type Reply = oneshot::Sender<StoreResult<CommitOutcome>>;

#[derive(Debug, Clone)]
pub struct CommitQueue {
    tx: mpsc::Sender<(ReportRecord, Reply)>,
}

impl CommitQueue {
    /// Starts the committer task. `max_batch` bounds one transaction; `depth` bounds the queue,
    /// so a slow store turns into back-pressure on the streams rather than memory growth.
    pub fn spawn(
        store: Arc<dyn Store>,
        evaluation: Option<EvaluationQueue>,
        max_batch: usize,
        depth: usize,
    ) -> Self {
        let (tx, rx) = mpsc::channel(depth);
        tokio::spawn(run(store, evaluation, rx, max_batch));
        Self { tx }
    }

    /// Queues one report; the receiver resolves once it is durably committed (or failed).
    pub async fn submit(
        &self,
        record: ReportRecord,
    ) -> oneshot::Receiver<StoreResult<CommitOutcome>> {
        let (reply, rx) = oneshot::channel();
        if let Err(mpsc::error::SendError((_, reply))) = self.tx.send((record, reply)).await {
            let _ = reply.send(Err(StoreError::Unavailable("committer stopped".into())));
        }
        rx
    }
}

async fn run(
    store: Arc<dyn Store>,
    evaluation: Option<EvaluationQueue>,
    mut rx: mpsc::Receiver<(ReportRecord, Reply)>,
    max_batch: usize,
) {
    let mut records = Vec::with_capacity(max_batch);
    let mut replies = Vec::with_capacity(max_batch);
    while let Some((record, reply)) = rx.recv().await {
        records.push(record);
        replies.push(reply);
        while records.len() < max_batch {
            match rx.try_recv() {
                Ok((record, reply)) => {
                    records.push(record);
                    replies.push(reply);
                }
                Err(_) => break,
            }
        }
        let started = Instant::now();
        let result = store.commit_reports(&records).await;
        match result {
            Ok(outcomes) => {
                let count = |want: CommitOutcome| {
                    outcomes.iter().filter(|o| matches!(o, Ok(o) if *o == want)).count() as u64
                };
                let (stored, duplicates) = (
                    count(CommitOutcome::Stored),
                    count(CommitOutcome::Duplicate) + count(CommitOutcome::Stale),
                );
                BatchCommitted {
                    stored,
                    duplicates,
                    rejected: outcomes.len() as u64 - stored - duplicates,
                    seconds: started.elapsed().as_secs_f64(),
                }
                .emit();
                let mut fresh = Vec::with_capacity(stored as usize);
                for ((reply, outcome), record) in
                    replies.drain(..).zip(outcomes).zip(records.drain(..))
                {
                    let is_new = matches!(outcome, Ok(CommitOutcome::Stored));
                    let _ = reply.send(outcome);
                    if is_new {
                        fresh.push(record);
                    }
                }
                // Acknowledged first; classification follows in its own stage.
                if let Some(evaluation) = &evaluation {
                    evaluation.submit(fresh).await;
                }
            }
            Err(err) => {
                tracing::error!(error = %err, reports = records.len(), "batch commit failed; nothing acknowledged");
                for reply in replies.drain(..) {
                    let _ = reply.send(Err(StoreError::Unavailable(err.to_string())));
                }
            }
        }
        records.clear();
    }
}
