//! The operator's controller running inside a test process (on the test's manual clock), stopped
//! gracefully by `stop` or aborted when dropped.

use std::sync::Arc;
use std::time::Duration;

use scheduled_exports::operator::{Context, Periods, controller};

/// The loops' periods under a test clock, which jumps without a watch event: the checker looks
/// every 250 ms and a reconcile looks again every 500 ms.
pub const TEST_PERIODS: Periods = Periods {
    checker_tick: Duration::from_millis(250),
    reconcile_poll: Some(Duration::from_millis(500)),
};

pub struct RunningController {
    pub ctx: Arc<Context>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningController {
    pub fn spawn(ctx: Arc<Context>) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(controller::run(ctx.clone(), async move {
            let _ = stopped.await;
        }));
        Self {
            ctx,
            stop: Some(stop),
            task,
        }
    }

    /// Stops it as SIGTERM would (rounds in progress get a moment to finish).
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(40), &mut self.task).await;
        self.task.abort();
    }
}

impl Drop for RunningController {
    fn drop(&mut self) {
        self.task.abort();
    }
}
