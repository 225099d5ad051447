//! Where usage events go. The router hands each attempt's event to a
//! [`UsageSink`] and moves on: the answer never waits for a database
//! write. [`StoreSink`] batches events into SQLite transactions on a task
//! of its own; [`UsageSink::flush`] waits until everything handed over so
//! far is written, which a shutdown does before it exits.

use crate::error::Error;
use crate::store::{Store, UsageEvent};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// A future a sink returns from [`UsageSink::flush`].
pub type FlushFuture<'a> = Pin<Box<dyn Future<Output = Result<(), Error>> + Send + 'a>>;

/// Receives the usage event of every attempt the router makes.
pub trait UsageSink: Send + Sync + 'static {
    /// Takes an event. Must not block: called on the request path, and from
    /// `Drop` of a cancelled stream.
    fn record(&self, event: UsageEvent);

    /// Resolves once every event recorded before the call is stored; an
    /// error if they could not be.
    fn flush(&self) -> FlushFuture<'_>;
}

/// Drops every event: for embedders who keep no usage.
#[derive(Debug, Default, Clone, Copy)]
pub struct DiscardSink;

impl UsageSink for DiscardSink {
    fn record(&self, _event: UsageEvent) {}

    fn flush(&self) -> FlushFuture<'_> {
        Box::pin(async { Ok(()) })
    }
}

/// Events written per transaction, at most.
const MAX_BATCH: usize = 512;
/// How long the writer waits for more events after the first of a batch.
const BATCH_WINDOW: Duration = Duration::from_millis(5);
/// Waits between attempts when a batch cannot be written.
const RETRY_DELAYS: [Duration; 4] = [
    Duration::from_millis(50),
    Duration::from_millis(200),
    Duration::from_secs(1),
    Duration::from_secs(5),
];

enum Message {
    Event(Box<UsageEvent>),
    Flush(oneshot::Sender<Result<(), Error>>),
}

/// Writes usage events to a [`Store`] in batches, off the request path.
///
/// Events queue in memory (unbounded: a request's event is never dropped
/// for want of room) and a writer task stores them in one transaction per
/// batch of up to 512. A batch that fails to write is retried with
/// back-off and kept until it is written, so a database that is briefly
/// locked or full loses nothing; `flush` reports the failure meanwhile.
/// The writer starts with the first event, on the tokio runtime of that
/// call.
pub struct StoreSink {
    store: Store,
    sender: Mutex<Option<mpsc::UnboundedSender<Message>>>,
}

impl std::fmt::Debug for StoreSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreSink")
            .field("store", &self.store)
            .finish()
    }
}

impl StoreSink {
    /// A sink writing to `store`.
    pub fn new(store: Store) -> Arc<Self> {
        Arc::new(Self {
            store,
            sender: Mutex::new(None),
        })
    }

    /// Sends `message` to the writer, starting it on first use. `Err`
    /// gives the message back when there is no tokio runtime to run it.
    fn send(&self, message: Message) -> Result<(), Box<Message>> {
        let mut sender = self.sender.lock().unwrap_or_else(|e| e.into_inner());
        let message = match sender.as_ref() {
            Some(live) => match live.send(message) {
                Ok(()) => return Ok(()),
                // The writer's runtime is gone: start another below.
                Err(mpsc::error::SendError(message)) => message,
            },
            None => message,
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Err(Box::new(message));
        };
        let (tx, rx) = mpsc::unbounded_channel();
        runtime.spawn(write_batches(self.store.clone(), rx));
        let sent = tx.send(message).map_err(|err| Box::new(err.0));
        *sender = Some(tx);
        sent
    }
}

impl UsageSink for StoreSink {
    fn record(&self, event: UsageEvent) {
        let Err(unsent) = self.send(Message::Event(Box::new(event))) else {
            return;
        };
        if let Message::Event(event) = *unsent {
            // Outside a runtime (a stream dropped after its runtime ended):
            // write it here rather than lose it.
            let store = self.store.clone();
            std::thread::spawn(move || {
                let done = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .map(|rt| rt.block_on(store.record_usage_many(vec![*event])));
                if !matches!(done, Ok(Ok(_))) {
                    tracing::error!("could not record a usage event outside a runtime");
                }
            });
        }
    }

    fn flush(&self) -> FlushFuture<'_> {
        let (tx, rx) = oneshot::channel();
        let sent = self.send(Message::Flush(tx));
        Box::pin(async move {
            if sent.is_err() {
                return Err(Error::Internal(
                    "usage flush outside a tokio runtime".into(),
                ));
            }
            rx.await
                .unwrap_or_else(|_| Err(Error::Internal("the usage writer stopped".into())))
        })
    }
}

/// The writer task: takes what has queued (waiting a moment after the
/// first event for others), writes it in one transaction, answers the
/// flushes that came before the write.
async fn write_batches(store: Store, mut rx: mpsc::UnboundedReceiver<Message>) {
    let mut pending: Vec<UsageEvent> = Vec::new();
    let mut flushes: Vec<oneshot::Sender<Result<(), Error>>> = Vec::new();
    let mut open = true;
    while open || !pending.is_empty() || !flushes.is_empty() {
        if pending.is_empty() && flushes.is_empty() {
            match rx.recv().await {
                Some(message) => take(message, &mut pending, &mut flushes),
                None => break,
            }
            if flushes.is_empty() {
                // More events arrive together under load: one transaction
                // for them all.
                let window = tokio::time::sleep(BATCH_WINDOW);
                tokio::pin!(window);
                while pending.len() < MAX_BATCH && flushes.is_empty() {
                    tokio::select! {
                        message = rx.recv() => match message {
                            Some(message) => take(message, &mut pending, &mut flushes),
                            None => { open = false; break; }
                        },
                        _ = &mut window => break,
                    }
                }
            }
        }
        while pending.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(message) => take(message, &mut pending, &mut flushes),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        // Failed events stay pending for the next round; the flushes
        // waiting on them hear why.
        let result = write_with_retries(&store, &mut pending).await;
        for flush in flushes.drain(..) {
            let _ = flush.send(match &result {
                Ok(()) => Ok(()),
                Err(err) => Err(Error::Database(err.to_string())),
            });
        }
    }
}

fn take(
    message: Message,
    pending: &mut Vec<UsageEvent>,
    flushes: &mut Vec<oneshot::Sender<Result<(), Error>>>,
) {
    match message {
        Message::Event(event) => pending.push(*event),
        Message::Flush(tx) => flushes.push(tx),
    }
}

/// Writes `pending` (emptying it on success), retrying with back-off. On
/// failure the events stay in `pending` for the next round.
async fn write_with_retries(store: &Store, pending: &mut Vec<UsageEvent>) -> Result<(), Error> {
    if pending.is_empty() {
        return Ok(());
    }
    let mut last = None;
    for delay in std::iter::once(Duration::ZERO).chain(RETRY_DELAYS) {
        tokio::time::sleep(delay).await;
        match store.record_usage_many(pending.clone()).await {
            Ok(_) => {
                pending.clear();
                return Ok(());
            }
            Err(err) => {
                tracing::error!(error = %err, events = pending.len(), "could not record usage events; retrying");
                last = Some(err);
            }
        }
    }
    Err(last.unwrap_or_else(|| Error::Internal("usage write failed".into())))
}

impl std::fmt::Debug for dyn UsageSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UsageSink")
    }
}
