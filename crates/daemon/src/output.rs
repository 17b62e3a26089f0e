//! The daemon's stdout: JSON lines written by a thread of their own behind
//! a bounded queue, so that a consumer that stops reading never stops the
//! daemon. When the queue is full, lines are dropped and counted; the
//! count is in `status` and the log says so.

use std::{
    io::{self, Write},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc::{self, SyncSender, TrySendError},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

/// Lines the queue holds before new ones are dropped.
pub const QUEUE_LINES: usize = 8_192;

/// What the writer thread shares with the daemon.
#[derive(Default)]
struct Shared {
    /// The reader of stdout is gone (EPIPE or another write error).
    closed: AtomicBool,
    /// Lines dropped because the queue was full.
    dropped: AtomicU64,
}

/// The line sink: `Write` collects one line; `flush` queues it.
pub struct Output {
    tx: Option<SyncSender<Vec<u8>>>,
    line: Vec<u8>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    /// Dropped count already in the log, and when it was logged (none
    /// yet: the first drop is logged at once).
    reported: (u64, Option<Instant>),
}

impl Output {
    /// Starts the writer thread on `sink` (stdout in the daemon).
    pub fn spawn(sink: impl Write + Send + 'static) -> io::Result<Self> {
        Self::with_queue(sink, QUEUE_LINES)
    }

    fn with_queue(mut sink: impl Write + Send + 'static, lines: usize) -> io::Result<Self> {
        let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(lines);
        let shared = Arc::new(Shared::default());
        let theirs = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("ironpost-stdout".into())
            .spawn(move || {
                while let Ok(line) = rx.recv() {
                    // Write what is queued, then flush once: a burst costs
                    // one flush, not one per line.
                    let mut result = sink.write_all(&line);
                    while result.is_ok()
                        && let Ok(more) = rx.try_recv()
                    {
                        result = sink.write_all(&more);
                    }
                    if result.and_then(|()| sink.flush()).is_err() {
                        theirs.closed.store(true, Ordering::Relaxed);
                        return;
                    }
                }
            })?;
        Ok(Self {
            tx: Some(tx),
            line: Vec::with_capacity(512),
            shared,
            thread: Some(thread),
            reported: (0, None),
        })
    }

    /// Lines dropped so far because the reader was too slow.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Logs the lines dropped since the last report, at most every 10 s.
    pub fn report_drops(&mut self) {
        let dropped = self.dropped();
        let due = self
            .reported
            .1
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(10));
        if dropped > self.reported.0 && due {
            tracing::warn!(
                "stdout is not being read fast enough: {} output lines dropped ({dropped} since \
                 start); detection and blocking go on",
                dropped - self.reported.0
            );
            self.reported = (dropped, Some(Instant::now()));
        }
    }

    /// Stops taking lines and waits up to `limit` for the queued ones to
    /// be written; a reader that never reads does not hold the daemon.
    pub fn finish(&mut self, limit: Duration) {
        self.tx = None;
        let Some(thread) = self.thread.take() else {
            return;
        };
        let until = Instant::now() + limit;
        while !thread.is_finished() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        if thread.is_finished() {
            let _ = thread.join();
        }
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.line.extend_from_slice(buf);
        Ok(buf.len())
    }

    /// Queues what was written since the last flush. Fails only when the
    /// reader of stdout is gone; a full queue drops the line and counts it.
    fn flush(&mut self) -> io::Result<()> {
        if self.line.is_empty() {
            return Ok(());
        }
        let line = std::mem::replace(&mut self.line, Vec::with_capacity(512));
        if self.shared.closed.load(Ordering::Relaxed) {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        let Some(tx) = &self.tx else {
            return Err(io::ErrorKind::BrokenPipe.into());
        };
        match tx.try_send(line) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(TrySendError::Disconnected(_)) => Err(io::ErrorKind::BrokenPipe.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Condvar, Mutex};

    use super::*;

    /// Whether the sink is released, and what it got.
    type Gate = (Mutex<(bool, Vec<u8>)>, Condvar);

    /// A sink that blocks until released, then keeps what it gets.
    #[derive(Clone, Default)]
    struct Stuck(Arc<Gate>);

    impl Write for Stuck {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let (lock, cv) = &*self.0;
            let mut g = cv.wait_while(lock.lock().unwrap(), |g| !g.0).unwrap();
            g.1.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_reader_that_stops_costs_lines_not_the_writer() {
        let sink = Stuck::default();
        let mut out = Output::with_queue(sink.clone(), 4).unwrap();
        let started = Instant::now();
        for i in 0..100 {
            writeln!(out, "line {i}").unwrap();
            out.flush().unwrap();
        }
        assert!(started.elapsed() < Duration::from_secs(5), "never blocked");
        // One line may be in the thread's hands, four in the queue.
        assert!(out.dropped() >= 95, "{}", out.dropped());
        {
            let (lock, cv) = &*sink.0;
            lock.lock().unwrap().0 = true;
            cv.notify_all();
        }
        out.finish(Duration::from_secs(5));
        let text = String::from_utf8(sink.0.0.lock().unwrap().1.clone()).unwrap();
        assert!(text.starts_with("line 0\n"), "{text}");
        assert_eq!(text.lines().count() as u64 + out.dropped(), 100);
    }

    #[test]
    fn a_closed_reader_is_an_error() {
        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut out = Output::with_queue(Closed, 4).unwrap();
        writeln!(out, "first").unwrap();
        out.flush().unwrap();
        let failed = (0..500).any(|_| {
            std::thread::sleep(Duration::from_millis(10));
            writeln!(out, "next").unwrap();
            out.flush().is_err()
        });
        assert!(failed, "the closed pipe is reported");
    }
}
