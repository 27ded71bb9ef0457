//! The owned handle every background worker of this crate is: a stop signal and its tasks.
//! `shutdown` signals and waits for the tasks; dropping the handle without it aborts them.

use tokio::sync::watch;
use tokio::task::JoinHandle;

pub(crate) struct Background {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Background {
    /// A handle with no task yet, and the receiver the tasks watch for the stop signal.
    pub(crate) fn new() -> (Background, watch::Receiver<bool>) {
        let (stop, stopped) = watch::channel(false);
        (
            Background {
                stop,
                tasks: Vec::new(),
            },
            stopped,
        )
    }

    pub(crate) fn spawn(&mut self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.tasks.push(tokio::spawn(task));
    }

    pub(crate) async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for t in std::mem::take(&mut self.tasks) {
            let _ = t.await;
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
