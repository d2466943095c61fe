//! The thread a tiered cache's connection lives on: a current-thread tokio runtime that runs the
//! supervisor, the connection's reader (which applies invalidations to L1) and its heartbeats,
//! so that a busy service runtime delays neither invalidations nor heartbeats (a delayed
//! heartbeat would pass for a lost server and flush L1). Blocking callers wait on it too.

use std::thread::JoinHandle;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// Runs until dropped, then drops the runtime and its tasks.
pub(super) struct BusThread {
    pub(super) handle: Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl BusThread {
    pub(super) fn start() -> std::io::Result<BusThread> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("cachet-redis".into())
            .spawn(move || {
                runtime.block_on(async {
                    let _ = stopped.await;
                });
            })?;
        Ok(BusThread {
            handle,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for BusThread {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            // Not from the bus thread itself: nothing running there owns a cache handle.
            let _ = thread.join();
        }
    }
}
