//! Shutdown: one token every task watches, and a tracker to wait for them.
//!
//! Library entry points take a [`Shutdown`] and stop when it fires; `main`
//! fires it on SIGINT/SIGTERM and then waits for the tracked tasks.

pub use tokio_util::sync::CancellationToken as Shutdown;
pub use tokio_util::task::TaskTracker;
